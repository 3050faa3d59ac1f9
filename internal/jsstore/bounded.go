package jsstore

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RequestWait bounds how long one request to the server (a read or write
// of one key, the publish that hands out an id) waits for its answer,
// whatever its context allows. A server that restarts between taking a
// request and answering it never answers; without the bound, a caller
// with a long context (a runner renewing a lease or recording a status
// under a gathering's timeout) would wait until that context ends instead
// of trying again, on a server that is back after a second.
const RequestWait = 5 * time.Second

// bound returns ctx cut to RequestWait.
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, RequestWait)
}

// boundedKV is a bucket whose single-key requests wait at most
// RequestWait; watchers, which stream, are as they are.
type boundedKV struct{ jetstream.KeyValue }

func (b boundedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	return b.KeyValue.Get(ctx, key)
}

func (b boundedKV) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	return b.KeyValue.GetRevision(ctx, key, revision)
}

func (b boundedKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	return b.KeyValue.Put(ctx, key, value)
}

func (b boundedKV) PutString(ctx context.Context, key string, value string) (uint64, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	return b.KeyValue.PutString(ctx, key, value)
}

func (b boundedKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	return b.KeyValue.Create(ctx, key, value, opts...)
}

func (b boundedKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	return b.KeyValue.Update(ctx, key, value, revision)
}

func (b boundedKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	return b.KeyValue.Delete(ctx, key, opts...)
}

func (b boundedKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	return b.KeyValue.Purge(ctx, key, opts...)
}

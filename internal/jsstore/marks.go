package jsstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Marks is a durable set of keys in a KV bucket of its own, of which each
// is marked at most once: the first Mark of a key wins, whichever process
// or delivery makes it, and a mark outlives restarts. A trigger marks what
// it has acted on with it.
type Marks struct {
	kv jetstream.KeyValue
}

// NewMarks opens the bucket, creating it if needed, with replicas copies.
func NewMarks(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*Marks, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: "marks of what has been acted on, one key each", Storage: jetstream.FileStorage,
		Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return &Marks{kv: boundedKV{kv}}, nil
}

// Mark marks key with value and reports true, or reports false when key is
// marked already. It uses KV Create, so that of concurrent Marks of one
// key exactly one reports true. key must be a valid KV key.
func (m *Marks) Mark(ctx context.Context, key string, value []byte) (bool, error) {
	_, err := m.kv.Create(ctx, key, value)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	}
	return false, fmt.Errorf("mark %s in bucket %s: %w", key, m.kv.Bucket(), err)
}

// Set replaces the value of a marked key, such as with what acting on it
// produced.
func (m *Marks) Set(ctx context.Context, key string, value []byte) error {
	if _, err := m.kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("set %s in bucket %s: %w", key, m.kv.Bucket(), err)
	}
	return nil
}

// Unmark removes the mark of key, so that the next Mark of it wins again:
// for whoever marked it and then failed to act.
func (m *Marks) Unmark(ctx context.Context, key string) error {
	if err := m.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("unmark %s in bucket %s: %w", key, m.kv.Bucket(), err)
	}
	return nil
}

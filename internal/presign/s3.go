package presign

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// ObjectSigner presigns downloads of objects; *s3store.Store is one.
type ObjectSigner interface {
	// PresignGet returns a URL that downloads the object key as an
	// attachment named filename without credentials until expires, ttl
	// from now.
	PresignGet(ctx context.Context, key, filename string, ttl time.Duration) (u *url.URL, expires time.Time, err error)
}

// S3 links to archives in object storage with presigned GETs, which the
// storage serves itself: the API is not on the download's path.
type S3 struct {
	objects ObjectSigner
	ttl     time.Duration
}

var _ Linker = (*S3)(nil)

// NewS3 returns a Linker whose links are presigned by objects and work for
// ttl.
func NewS3(objects ObjectSigner, ttl time.Duration) (*S3, error) {
	if err := CheckTTL(ttl); err != nil {
		return nil, fmt.Errorf("presign: TTL: %w", err)
	}
	return &S3{objects: objects, ttl: ttl}, nil
}

// Link presigns a GET of g's archive that the browser saves under its
// archive-name.
func (s *S3) Link(ctx context.Context, g mustgather.Gathering) (string, time.Time, error) {
	if err := linkable(g); err != nil {
		return "", time.Time{}, err
	}
	u, expires, err := s.objects.PresignGet(ctx, mustgather.ArchiveKey(g.ID, g.ArchiveName), g.ArchiveName, s.ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	return u.String(), expires, nil
}

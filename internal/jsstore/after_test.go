package jsstore

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

func TestListAfterACursorPagesThroughEveryGathering(t *testing.T) {
	t.Parallel()
	st := newStore(t, jetStream(t, testenv.NATS(t)), Config{})
	for _, name := range []string{"a", "b", "a", "b", "a"} {
		mustCreate(t, st, gathering(name))
	}
	tests := []struct {
		name   string
		filter mustgather.Filter
		want   []mustgather.ID
	}{
		{"after a cursor: every gathering with a higher id", mustgather.Filter{After: 2}, []mustgather.ID{3, 4, 5}},
		{"after a cursor with a limit: the lowest ids after it", mustgather.Filter{After: 1, Limit: 2, Paged: true}, []mustgather.ID{2, 3}},
		{"after a cursor with a filter and limit", mustgather.Filter{After: 1, Limit: 1, CustomName: "a", Paged: true}, []mustgather.ID{3}},
		{"from the start with a limit: the lowest ids", mustgather.Filter{Limit: 2, Paged: true}, []mustgather.ID{1, 2}},
		{"after the last id: none", mustgather.Filter{After: 5}, []mustgather.ID{}},
		{"a limit without a cursor: the highest ids", mustgather.Filter{Limit: 2}, []mustgather.ID{4, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := st.List(context.Background(), tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, ids(list)); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
}

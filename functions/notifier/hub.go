package notifier

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// event is one gathering state, framed once for every stream that sends
// it.
type event struct {
	id       mustgather.ID
	revision uint64
	final    bool   // the gathering has ended: completed or error
	frame    []byte // the whole SSE event, blank line included
}

// newEvent frames g as an SSE event: its record's revision as the id, and
// the gathering JSON as GET /must-gather/{id} returns it, on one line.
func newEvent(g mustgather.Gathering) event {
	var b bytes.Buffer
	b.WriteString("id: ")
	b.WriteString(strconv.FormatUint(g.Revision, 10))
	b.WriteString("\nevent: gathering\ndata: ")
	enc := json.NewEncoder(&b)
	// As the API writes it: no HTML escapes. JSON escapes every line break
	// in a string, so the data stays on one line; Encode ends it.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(g); err != nil {
		// A Gathering always marshals; this is a programming error.
		panic(fmt.Sprintf("notifier: encode gathering %d: %v", g.ID, err))
	}
	b.WriteString("\n")
	return event{id: g.ID, revision: g.Revision, final: g.Status.Terminal(), frame: b.Bytes()}
}

// subscriber is one stream's place in the hub: a bounded queue of events.
type subscriber struct {
	only   mustgather.ID // 0: every gathering
	events chan event
	// gone is closed when the hub drops the subscriber, because its queue
	// was full (the client reads too slowly) or the hub stopped.
	gone chan struct{}
}

// hub fans the changes of one watch out to every subscriber. Publishing
// never waits for a subscriber: one whose queue is full is dropped, and
// its client reconnects with Last-Event-ID.
type hub struct {
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	stopped bool
}

func newHub() *hub {
	return &hub{subs: make(map[*subscriber]struct{})}
}

// subscribe adds a subscriber with a queue of size events, for the
// gathering only (0: every gathering). It reports false when the hub has
// stopped.
func (h *hub) subscribe(only mustgather.ID, size int) (*subscriber, bool) {
	s := &subscriber{only: only, events: make(chan event, size), gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil, false
	}
	h.subs[s] = struct{}{}
	return s, true
}

// unsubscribe removes s; removing it twice, or after the hub dropped it,
// does nothing.
func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.gone)
	}
}

// publish queues e for every subscriber that wants it, and drops those
// whose queue is full.
func (h *hub) publish(e event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.only != 0 && s.only != e.id {
			continue
		}
		select {
		case s.events <- e:
		default:
			delete(h.subs, s)
			close(s.gone)
		}
	}
}

// stop drops every subscriber and refuses new ones, so that every stream
// ends.
func (h *hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.gone)
	}
}

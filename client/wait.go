package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// WaitOptions tunes Wait; the zero value follows the event stream when the
// server has one and reports nothing.
type WaitOptions struct {
	// Progress, when set, is called with each state of the gathering that
	// Wait sees, the final one included.
	Progress func(*Gathering)
	// Poll makes Wait poll even where the server has an event stream.
	Poll bool
}

// Wait returns the gathering ref names once it has ended, in status
// completed or error (an error status is not an error of Wait's: look at
// Status), or ctx's error when ctx ends first. It follows the gathering's
// event stream (GET /must-gather/{id}/events), resuming it where it broke
// off; on a server without one it polls, less and less often.
func (c *Client) Wait(ctx context.Context, ref string, o WaitOptions) (*Gathering, error) {
	g, err := c.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	progress := func(g *Gathering) {
		if o.Progress != nil {
			o.Progress(g)
		}
	}
	id := strconv.FormatInt(g.ID, 10)
	if g.Status.Final() {
		progress(g)
		return g, nil
	}
	if o.Poll {
		return c.poll(ctx, id, g, progress)
	}
	s := stream{lastID: ""}
	backoff := c.pollMin
	for {
		last, err := c.follow(ctx, id, &s, progress)
		switch {
		case last != nil && last.Status.Final():
			return last, nil
		case errors.Is(err, errNoStream):
			if last == nil {
				last = g
			}
			return c.poll(ctx, id, last, progress)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrUnauthorized), errors.Is(err, ErrForbidden), errors.Is(err, ErrInvalid):
			return nil, err
		}
		if last != nil {
			backoff = c.pollMin // it was making progress
		}
		if err := sleep(ctx, backoff); err != nil {
			return nil, err
		}
		backoff = min(backoff*2, c.pollMax)
	}
}

// errNoStream is a server that has no event stream of gatherings.
var errNoStream = errors.New("no event stream")

// stream is what a followed event stream has told so far.
type stream struct{ lastID string }

// follow reads the gathering's event stream until it ends, returning the
// last state it told.
func (c *Client) follow(ctx context.Context, id string, s *stream, progress func(*Gathering)) (*Gathering, error) {
	req, err := c.newRequest(ctx, http.MethodGet, refPath(id)+"/events", nil, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if s.lastID != "" {
		req.Header.Set("Last-Event-ID", s.lastID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusMethodNotAllowed, resp.StatusCode == http.StatusNotImplemented:
		// The gathering exists (Wait got it by id), so this path does not.
		return nil, errNoStream
	case resp.StatusCode != http.StatusOK:
		return nil, readError(req, resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return nil, errNoStream
	}
	var last *Gathering
	err = readEvents(resp.Body, func(e event) error {
		if e.id != "" {
			s.lastID = e.id
		}
		if e.name != "gathering" {
			return nil
		}
		var g Gathering
		if err := json.Unmarshal([]byte(e.data), &g); err != nil {
			return fmt.Errorf("event %s: %w", e.id, err)
		}
		last = &g
		progress(&g)
		if g.Status.Final() {
			return io.EOF
		}
		return nil
	})
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return last, err
}

// event is one Server-Sent Event.
type event struct{ id, name, data string }

// readEvents calls fn with each event on r, as the HTML standard reads
// text/event-stream, until r ends or fn returns an error.
func readEvents(r io.Reader, fn func(event) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var e event
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // an event not ended by a blank line is dropped
			}
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if data != nil {
				if e.name == "" {
					e.name = "message"
				}
				e.data = strings.Join(data, "\n")
				if err := fn(e); err != nil {
					return err
				}
			}
			e.name, e.data, data = "", "", nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			e.name = value
		case "data":
			data = append(data, value)
		case "id":
			if !strings.ContainsRune(value, 0) {
				e.id = value
			}
		}
	}
}

// poll asks for the gathering's state until it ends: first after the
// client's least interval, then half as often again each time nothing
// changed, up to its greatest.
func (c *Client) poll(ctx context.Context, id string, g *Gathering, progress func(*Gathering)) (*Gathering, error) {
	interval := c.pollMin
	for {
		if err := sleep(ctx, interval); err != nil {
			return nil, err
		}
		next, err := c.Get(ctx, id)
		switch {
		case err == nil:
		case errors.Is(err, ErrUnavailable), errors.Is(err, ErrRateLimited), !isAPIError(err) && ctx.Err() == nil:
			// Passing: the service restarts, or the network hiccups.
			interval = min(interval*3/2, c.pollMax)
			continue
		default:
			return nil, err
		}
		if next.Status.Final() {
			progress(next)
			return next, nil
		}
		if next.UpdatedAt.Equal(g.UpdatedAt) && next.Status == g.Status {
			interval = min(interval*3/2, c.pollMax)
			continue
		}
		progress(next)
		g, interval = next, c.pollMin
	}
}

func isAPIError(err error) bool {
	_, ok := errors.AsType[*APIError](err)
	return ok
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package testenv

import (
	"bufio"
	"io"
	"strings"
)

// SSEFrame is one block of a text/event-stream (Server-Sent Events): the
// fields up to a blank line. A block of comments alone, such as a
// heartbeat, has only Comments.
type SSEFrame struct {
	ID       string
	Event    string
	Data     string // data lines joined with "\n"
	Retry    string
	Comments []string // without the leading ": "
}

// IsEvent reports whether f carries an event rather than only comments or
// a retry.
func (f SSEFrame) IsEvent() bool { return f.Event != "" || f.Data != "" }

// ReadSSE sends each frame of the event stream r to frames as it arrives,
// until r ends, and returns why it ended (io.EOF at the end of the
// response).
func ReadSSE(r io.Reader, frames chan<- SSEFrame) error {
	br := bufio.NewReader(r)
	var f SSEFrame
	empty, data := true, false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if !empty {
				frames <- f
			}
			f, empty, data = SSEFrame{}, true, false
			continue
		}
		empty = false
		if c, ok := strings.CutPrefix(line, ":"); ok {
			f.Comments = append(f.Comments, strings.TrimPrefix(c, " "))
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			f.ID = value
		case "event":
			f.Event = value
		case "data":
			if data {
				f.Data += "\n"
			}
			f.Data, data = f.Data+value, true
		case "retry":
			f.Retry = value
		}
	}
}

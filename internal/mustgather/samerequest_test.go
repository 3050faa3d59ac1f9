package mustgather_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// TestSameRequestComparesEveryFieldARequestSets changes each field of a
// gathering in turn: a field that a requested event carries and the store
// keeps (every field but the status and what a run reports) must make
// SameRequest false, so that a field added later is not forgotten.
func TestSameRequestComparesEveryFieldARequestSets(t *testing.T) {
	notRequested := map[string]bool{
		"UpdatedAt": true, "Status": true, "ArchiveSize": true, "ArchiveName": true, "ExecOutput": true,
		"Seq": true, "Reason": true, "Revision": true, "Redaction": true,
		// Preface is stored but not carried by a requested event.
		"Preface":         true,
		"CancelRequested": true,
	}
	g := mustgather.Gathering{ID: 4, CreatedAt: mustgather.Timestamp{Time: time.Now()}, Status: mustgather.StatusNew, Command: "true", Timeout: "1m"}
	if !g.SameRequest(g) {
		t.Fatal("a gathering is not the same request as itself")
	}
	typ := reflect.TypeOf(g)
	for i := range typ.NumField() {
		f := typ.Field(i)
		o := g
		v := reflect.ValueOf(&o).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Bool:
			v.SetBool(!v.Bool())
		case reflect.Uint64, reflect.Uint32:
			v.SetUint(v.Uint() + 1)
		case reflect.Int64, reflect.Int:
			v.SetInt(v.Int() + 1)
		case reflect.Pointer:
			v.Set(reflect.New(v.Type().Elem()))
		case reflect.Struct:
			if ts, ok := v.Addr().Interface().(*mustgather.Timestamp); ok {
				ts.Time = ts.Add(time.Second)
				break
			}
			t.Fatalf("field %s: no way to change a %s here", f.Name, f.Type)
		default:
			t.Fatalf("field %s: no way to change a %s here", f.Name, f.Type)
		}
		if same := g.SameRequest(o); same != notRequested[f.Name] {
			t.Errorf("with another %s, SameRequest = %v, want %v", f.Name, same, notRequested[f.Name])
		}
	}
}

package redact

import (
	"bytes"
)

// yamlState follows the structure of a YAML file by indentation, enough to
// find the data and stringData values of Secrets (in lists too), the
// values of credential keys, and env entries naming a credential.
type yamlState struct {
	objs      []yamlObj
	dataInd   int     // indent of an open data: or stringData: key, or -1
	dataOwner *object // the object that data belongs to
	valInd    int     // a block scalar value goes on while lines are deeper; -1 none
	valOwner  *object
	valRule   string
	envInd    int // indent of "name: SOME_PASSWORD", whose "value:" follows; -1 none
}

type yamlObj struct {
	indent int
	o      *object
}

func (y *yamlState) reset() { y.dataInd, y.valInd, y.envInd = -1, -1, -1 }

// isBlockIndicator reports whether a YAML value starts a block scalar:
// | or >, with chomping and indentation indicators.
func isBlockIndicator(v []byte) bool {
	if len(v) == 0 || v[0] != '|' && v[0] != '>' {
		return false
	}
	for _, c := range v[1:] {
		if c != '-' && c != '+' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func (y *yamlState) line(e *engine, line []byte) {
	ind := 0
	for ind < len(line) && line[ind] == ' ' {
		ind++
	}
	blank := ind
	for blank < len(line) && (line[blank] == ' ' || line[blank] == '\t' || line[blank] == '\r') {
		blank++
	}
	if blank == len(line) {
		return
	}
	if y.valInd >= 0 {
		if ind > y.valInd {
			e.add(ind, len(bytes.TrimRight(line, " \t\r")), y.valRule, y.valOwner)
			return
		}
		y.valInd = -1
	}
	if line[ind] == '#' {
		return
	}
	if ind == 0 && (bytes.HasPrefix(line, []byte("---")) || bytes.HasPrefix(line, []byte("..."))) &&
		(len(line) == 3 || line[3] == ' ' || line[3] == '\r') {
		y.closeTo(e, -1, false)
		y.dataInd, y.envInd = -1, -1
		return
	}
	eff, dash := ind, false
	for eff < len(line) && line[eff] == '-' && (eff+1 == len(line) || line[eff+1] == ' ') {
		dash = true
		eff++
		for eff < len(line) && line[eff] == ' ' {
			eff++
		}
	}
	key, vs, ve := yamlKeyValue(line, eff)
	if y.dataInd >= 0 {
		if eff > y.dataInd {
			switch v := line[vs:ve]; {
			case key == nil || len(v) == 0:
			case isBlockIndicator(v):
				y.valInd, y.valOwner, y.valRule = eff, y.dataOwner, RuleSecretData
			default:
				s, t := unquote(line, vs, ve)
				e.add(s, t, RuleSecretData, y.dataOwner)
			}
			return
		}
		y.dataInd = -1
	}
	y.closeTo(e, eff, dash)
	if dash || eff < y.envInd {
		y.envInd = -1
	}
	if key == nil {
		return
	}
	yo := y.at(eff)
	v := line[vs:ve]
	switch string(key) {
	case "kind":
		s, t := unquote(line, vs, ve)
		if o := yo.object(); o.state == 0 {
			o.state = -1
			if string(line[s:t]) == "Secret" {
				o.state = 1
			}
			e.release()
		}
	case "data", "stringData":
		if len(v) == 0 {
			y.dataInd, y.dataOwner = eff, yo.object()
		}
	case "name":
		s, t := unquote(line, vs, ve)
		if isCredentialKey(line[s:t]) {
			y.envInd = eff
		}
	case "value":
		if y.envInd == eff && nonTrivial(v) {
			s, t := unquote(line, vs, ve)
			e.add(s, t, RuleCredentialKey, nil)
		}
	}
	if isCredentialKey(key) {
		switch {
		case isBlockIndicator(v):
			y.valInd, y.valOwner, y.valRule = eff, nil, RuleCredentialKey
		case nonTrivial(v) && !bytes.ContainsAny(v[:1], "{[&*!"):
			s, t := unquote(line, vs, ve)
			e.add(s, t, RuleCredentialKey, nil)
		}
	}
}

// at returns the object whose keys are at indent, opening it if need be.
func (y *yamlState) at(indent int) *yamlObj {
	if n := len(y.objs); n > 0 && y.objs[n-1].indent == indent {
		return &y.objs[n-1]
	}
	y.objs = append(y.objs, yamlObj{indent: indent})
	return &y.objs[len(y.objs)-1]
}

// object returns the object of a mapping, made when first needed: most
// mappings have neither kind nor data.
func (o *yamlObj) object() *object {
	if o.o == nil {
		o.o = &object{}
	}
	return o.o
}

// closeTo ends the objects deeper than indent, and the one at indent when
// a new list item starts there.
func (y *yamlState) closeTo(e *engine, indent int, item bool) {
	closed := false
	for n := len(y.objs); n > 0; n = len(y.objs) {
		top := y.objs[n-1]
		if top.indent < indent || top.indent == indent && !item {
			break
		}
		if top.o != nil && top.o.state == 0 {
			top.o.state = -1 // it ended without saying it is a Secret
			closed = true
		}
		y.objs = y.objs[:n-1]
	}
	if closed {
		e.release()
	}
}

// yamlKeyValue reads "key: value" starting at line[at]: the key (quotes
// removed) and where its value starts and ends, with trailing blanks and
// a comment left out. key is nil when the line holds no key.
func yamlKeyValue(line []byte, at int) (key []byte, vs, ve int) {
	rest := line[at:]
	var k []byte
	var after int
	switch {
	case len(rest) == 0:
		return nil, 0, 0
	case rest[0] == '"' || rest[0] == '\'':
		end := bytes.IndexByte(rest[1:], rest[0])
		if end < 0 {
			return nil, 0, 0
		}
		k, after = rest[1:1+end], 2+end
		if after >= len(rest) || rest[after] != ':' {
			return nil, 0, 0
		}
	default:
		// Up to the colon, each byte a key's; one pass, as most lines
		// are told apart in their first bytes.
		c := 0
		for c < len(rest) && rest[c] != ':' {
			if notInKey[rest[c]] {
				return nil, 0, 0
			}
			c++
		}
		if c == 0 || c == len(rest) {
			return nil, 0, 0
		}
		k, after = rest[:c], c
	}
	after++ // the colon
	if after < len(rest) && rest[after] != ' ' && rest[after] != '\t' && rest[after] != '\r' {
		return nil, 0, 0
	}
	vs = at + after
	for vs < len(line) && (line[vs] == ' ' || line[vs] == '\t') {
		vs++
	}
	ve = len(line)
	if vs < ve && line[vs] != '"' && line[vs] != '\'' {
		// A comment starts at " #"; values are short.
		for j := vs + 1; j < len(line); j++ {
			if line[j] == '#' && line[j-1] == ' ' {
				ve = j - 1
				break
			}
		}
	}
	for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t' || line[ve-1] == '\r') {
		ve--
	}
	return k, vs, ve
}

// notInKey are the bytes a plain YAML key of interest never holds.
var notInKey = func() (t [256]bool) {
	for _, c := range []byte(" \t{}[],#\"'") {
		t[c] = true
	}
	return t
}()

// unquote narrows [s, t) to inside its quotes, if it is quoted.
func unquote(line []byte, s, t int) (int, int) {
	if t-s >= 2 && (line[s] == '"' || line[s] == '\'') && line[t-1] == line[s] {
		return s + 1, t - 1
	}
	return s, t
}

// jsonState follows a JSON file, a byte at a time over its lines, to find
// the data and stringData values of Secrets (in lists too) and env
// entries naming a credential.
type jsonState struct {
	stack []jsonFrame
	inStr bool
	esc   bool
	isKey bool
	start int
	buf   []byte // the key, or a short value, being read
}

type jsonFrame struct {
	obj       bool
	o         *object
	dataOwner *object // this object is the data of a possible Secret
	key       []byte
	expectKey bool
	envName   bool // "name" named a credential
}

const maxJSONKey = 64

func (j *jsonState) scan(e *engine, line []byte) {
	if j.inStr {
		j.start = 0
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		if j.inStr {
			switch {
			case j.esc:
				j.esc = false
			case c == '\\':
				j.esc = true
			case c == '"':
				j.inStr = false
				j.endString(e, i)
				continue
			}
			if len(j.buf) <= maxJSONKey {
				j.buf = append(j.buf, c)
			}
			continue
		}
		switch c {
		case '"':
			j.inStr, j.start, j.buf = true, i+1, j.buf[:0]
			top := j.top()
			j.isKey = top != nil && top.obj && top.expectKey
		case '{':
			f := jsonFrame{obj: true, o: &object{}, expectKey: true}
			if p := j.top(); p != nil && p.obj && (string(p.key) == "data" || string(p.key) == "stringData") {
				f.dataOwner = p.o
			}
			j.stack = append(j.stack, f)
		case '[':
			j.stack = append(j.stack, jsonFrame{})
		case '}', ']':
			if n := len(j.stack); n > 0 {
				f := j.stack[n-1]
				j.stack = j.stack[:n-1]
				if f.obj && f.o.state == 0 {
					f.o.state = -1
					e.release()
				}
			}
		case ':':
			if top := j.top(); top != nil {
				top.expectKey = false
			}
		case ',':
			if top := j.top(); top != nil && top.obj {
				top.expectKey = true
			}
		}
	}
	if j.inStr && !j.isKey {
		// A value cut at the buffer's size: what came so far.
		if top := j.top(); top != nil && top.dataOwner != nil {
			e.add(j.start, len(line), RuleSecretData, top.dataOwner)
		}
	}
}

func (j *jsonState) top() *jsonFrame {
	if len(j.stack) == 0 {
		return nil
	}
	return &j.stack[len(j.stack)-1]
}

// endString handles a string that ended at line[end].
func (j *jsonState) endString(e *engine, end int) {
	top := j.top()
	if top == nil || !top.obj {
		return
	}
	if j.isKey {
		top.key = append(top.key[:0], j.buf...)
		return
	}
	switch {
	case top.dataOwner != nil:
		e.add(j.start, end, RuleSecretData, top.dataOwner)
	case string(top.key) == "kind" && top.o.state == 0:
		top.o.state = -1
		if string(j.buf) == "Secret" {
			top.o.state = 1
		}
		e.release()
	case string(top.key) == "name":
		top.envName = isCredentialKey(j.buf)
	case string(top.key) == "value" && top.envName && end > j.start:
		e.add(j.start, end, RuleCredentialKey, nil)
	}
}

package redact

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"slices"
	"strings"
)

// The built-in rules, by the name redactions.json gives them.
const (
	RuleSecretData     = "kubernetes-secret-data"
	RulePrivateKey     = "pem-private-key"
	RuleBearerToken    = "bearer-token"
	RuleJWT            = "jwt"
	RuleURLPassword    = "url-password"
	RuleCredentialKey  = "credential-value"
	RuleCloudAccessKey = "cloud-access-key"
)

// BuiltinRules lists the built-in rule names; a configured rule may not
// take one.
var BuiltinRules = []string{RuleSecretData, RulePrivateKey, RuleBearerToken, RuleJWT, RuleURLPassword, RuleCredentialKey, RuleCloudAccessKey}

// credentialKeyword is how a key that holds a credential ends (any case):
// password, db_password, clientSecret, access_token, apiKey,
// aws_secret_access_key, credentials, client-key-data.
const credentialKeyword = `(?:password|passwd|secret|token|api[_-]?key|credentials?|access[_-]?key|account[_-]?key|private[_-]?key|client[_-]?key[_-]?data)`

// credentialEnds are how a credential key ends once lower-cased and
// stripped of '_' and '-': the keywords of credentialKeyword.
var credentialEnds = []string{"password", "passwd", "secret", "token", "apikey", "credential", "credentials",
	"accesskey", "accountkey", "privatekey", "clientkeydata"}

// isCredentialKey reports whether key names a credential, as
// credentialKeyword says, without a regular expression: it is asked of
// every key of every YAML file. Most keys are told apart by their last
// letters, so the key is read from its end.
func isCredentialKey(key []byte) bool {
	if len(key) < 5 || len(key) > 128 {
		return false
	}
	last := len(key) - 1
	for last >= 0 && (key[last] == '_' || key[last] == '-') {
		last--
	}
	if last < 0 {
		return false
	}
	// Most keys: the last letter tells.
	for _, end := range credentialEndsBy[lowerTable[key[last]]] {
		if endsWithKeyword(key[:last+1], end) {
			// Every byte of a key of interest is a letter, a digit, '.',
			// '_' or '-'.
			for _, c := range key {
				if !isKeyByte(lowerTable[c]) {
					return false
				}
			}
			return true
		}
	}
	return false
}

// endsWithKeyword reports whether key, in lower case and without '_' and
// '-', ends with end.
func endsWithKeyword(key []byte, end string) bool {
	i := len(key) - 1
	for j := len(end) - 1; j >= 0; j-- {
		for i >= 0 && (key[i] == '_' || key[i] == '-') {
			i--
		}
		if i < 0 || lowerTable[key[i]] != end[j] {
			return false
		}
		i--
	}
	return true
}

// credentialEndsBy are credentialEnds by their last letter.
var credentialEndsBy = func() (t [256][]string) {
	for _, end := range credentialEnds {
		t[end[len(end)-1]] = append(t[end[len(end)-1]], end)
	}
	return t
}()

// credentialNeedles are the lower-case stems of credential keys; a line
// is matched against the credential rules only when one of them is
// followed, past closing quotes and blanks, by ':', '=' or ',' (the end of
// a key, or of an env entry's name).
var credentialNeedles = func() []int {
	var ids []int
	for _, n := range []string{"passw", "secret", "token", "credential", "apikey", "api_key", "api-key",
		"accesskey", "access_key", "access-key", "accountkey", "account_key", "account-key",
		"privatekey", "private_key", "private-key", "clientkeydata", "client-key-data", "client_key_data"} {
		ids = append(ids, needleID(n))
	}
	return ids
}()

// needles are the strings that let a line be matched against a rule; a
// rule's needles are ids into it. A needle is found in any case, unless
// the rule it serves matches its letters in one case only.
var needles []needle

type needle struct {
	s    []byte // lower case where fold
	fold bool
}

// needleID returns the id of s, found in any case (s in lower case).
func needleID(s string) int { return addNeedle(s, true) }

// exactNeedleID returns the id of s, found in its case only.
func exactNeedleID(s string) int { return addNeedle(s, false) }

func addNeedle(s string, fold bool) int {
	for i, n := range needles {
		if string(n.s) == s && n.fold == fold {
			return i
		}
	}
	needles = append(needles, needle{s: []byte(s), fold: fold})
	return len(needles) - 1
}

var (
	pemNeedle    = exactNeedleID(string(pemBegin))
	secretNeedle = needleID("secret")
)

// hit is where a needle occurs in a document.
type hit struct {
	pos int
	id  int
}

// has reports whether the current line, whose lower-case form is lower,
// holds needle id.
func (e *engine) has(id int, lower []byte) bool {
	for k := e.hi; k < len(e.hits) && e.hits[k].pos < e.pos+len(lower); k++ {
		if e.hits[k].id == id {
			return true
		}
	}
	return false
}

// quietLine reports whether the current line of a document, n bytes
// long, holds no needle at all, so that no line rule need look at it: most
// lines of a gathering do not, and then cost a comparison.
func (e *engine) quietLine(n int) bool {
	for e.hi < len(e.hits) && e.hits[e.hi].pos < e.pos {
		e.hi++
	}
	return e.hi == len(e.hits) || e.hits[e.hi].pos >= e.pos+n
}

func (e *engine) credentialHint(lower []byte) bool {
	for _, id := range credentialNeedles {
		if !e.has(id, lower) {
			continue
		}
		n := needles[id].s
		for at := 0; ; {
			i := bytes.Index(lower[at:], n)
			if i < 0 {
				break
			}
			s, j := at+i, at+i+len(n)
			for s > 0 && isKeyByte(lower[s-1]) {
				s--
			}
			for j < len(lower) && isKeyByte(lower[j]) {
				j++
			}
			key := lower[s:j]
			for j < len(lower) && (lower[j] == '"' || lower[j] == '\\' || lower[j] == '\'' || lower[j] == ' ' || lower[j] == '\t') {
				j++
			}
			if j < len(lower) && (lower[j] == ':' || lower[j] == '=' || lower[j] == ',') && isCredentialKey(key) {
				return true
			}
			at = at + i + 1
		}
	}
	return false
}

func isKeyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.'
}

// lineRule is a built-in rule applied to each line on its own. A line is
// matched only when its lower-case form holds one of the needles, so that
// most lines cost a few substring searches and no regular expression.
type lineRule struct {
	name    string
	needles []int // ids of needles; nil: the credential hint

	re     *regexp.Regexp
	groups []int                 // the groups named mask
	check  func(val []byte) bool // optional: is this match a secret
	// need are bytes that every match holds: a line without one of them
	// is not matched, which is cheaper than the expression finding so.
	need string
	// back, when set, says that a match starts at one of the needles, or
	// before it over bytes that back holds only: the expression is then
	// run from there, not from the start of a long line. Unless the line
	// holds one of whole, with which a match may start further back.
	back  *[256]bool
	whole []int
}

// startingAt returns r with the bytes over which a match may start
// before its needle, and the needles (lower case, found in any case) with
// which it may start further back.
func (r lineRule) startingAt(back *[256]bool, whole ...string) lineRule {
	r.back = back
	for _, n := range whole {
		r.whole = append(r.whole, needleID(n))
	}
	return r
}

// wordBytes are the bytes of a word (\w). A match that starts with \b
// at its needle is found as well from the start of the needle's word,
// where the byte before decides a \b as it does in the whole line.
var wordBytes = byteSet("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

// schemeBytes are those of a URL's scheme, and of a word.
var schemeBytes = byteSet("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+.-")

func byteSet(s string) *[256]bool {
	var t [256]bool
	for i := range len(s) {
		t[s[i]] = true
	}
	return &t
}

// needing returns r with the bytes that every match of it holds.
func (r lineRule) needing(need string) lineRule {
	r.need = need
	return r
}

// holdsAll reports whether line holds each byte of need.
func holdsAll(line []byte, need string) bool {
	for i := range len(need) {
		if bytes.IndexByte(line, need[i]) < 0 {
			return false
		}
	}
	return true
}

// newLineRule returns a rule whose regular expression expr matches only
// lines that hold one of needles; they are found in any case where expr
// starts with (?i), else in the case they are given in.
func newLineRule(name string, needles []string, expr string, check func([]byte) bool) lineRule {
	re := regexp.MustCompile(expr)
	r := lineRule{name: name, re: re, check: check}
	fold := strings.HasPrefix(expr, "(?i)")
	for _, n := range needles { // nil needles: the credential hint decides
		if fold {
			n = strings.ToLower(n)
		}
		r.needles = append(r.needles, addNeedle(n, fold))
	}
	for i, n := range re.SubexpNames() {
		if n == "mask" {
			r.groups = append(r.groups, i)
		}
	}
	return r
}

// A quoted JSON string, also as it appears escaped inside another JSON
// string (\"...\").
const (
	q      = `\\?"`
	qValue = `(?:[^"\\]|\\[^"])*`
)

var lineRules = []lineRule{
	newLineRule(RuleCredentialKey, nil,
		`(?i)`+q+`[\w.-]*`+credentialKeyword+q+`\s*:\s*`+q+`(?P<mask>`+qValue+`)`+q, nonTrivial).needing(`":`),
	newLineRule(RuleCredentialKey, nil,
		`(?i)'[\w.-]*`+credentialKeyword+`'\s*:\s*'(?P<mask>[^']*)'`, nonTrivial).needing(`':`),
	newLineRule(RuleCredentialKey, nil,
		`(?i)(?:^|[^\w.-])[\w.-]*`+credentialKeyword+`\s*=\s*(?:"(?P<mask>[^"]*)"|'(?P<mask>[^']*)'|(?P<mask>[^\s"'&;,]+))`, nonTrivial).needing(`=`),
	newLineRule(RuleCredentialKey, nil,
		`(?i)`+q+`name`+q+`\s*:\s*`+q+`[\w.-]*`+credentialKeyword+q+`\s*,\s*`+q+`value`+q+`\s*:\s*`+q+`(?P<mask>`+qValue+`)`+q, nonTrivial).needing(`":,`),
	newLineRule(RuleBearerToken, []string{"bearer", "basic"},
		`(?i)(?:\bbearer|authorization`+q+`?\s*[:=]\s*`+q+`?basic)\s+(?P<mask>[A-Za-z0-9._~+/-]{16,}=*)`, nil).startingAt(wordBytes, "basic"),
	newLineRule(RuleJWT, []string{"eyJ"},
		`\b(?P<mask>eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)`, nil).needing(`.`).startingAt(wordBytes),
	newLineRule(RuleURLPassword, []string{"://"},
		`\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@"'<>\\]+:(?P<mask>[^\s/@"'<>\\]+)@`, nil).needing(`@`).startingAt(schemeBytes),
	newLineRule(RuleCloudAccessKey, []string{"AKIA", "ASIA", "AIDA", "AROA", "AGPA", "ANPA", "ANVA", "AIPA"},
		`\b(?P<mask>(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA)[A-Z0-9]{16})\b`, nil).startingAt(wordBytes),
	newLineRule(RuleCloudAccessKey, []string{"AIza"},
		`\b(?P<mask>AIza[0-9A-Za-z_-]{35})`, nil).startingAt(wordBytes),
	newLineRule(RulePrivateKey, []string{"LS0tLS1CRUdJTi"},
		`(?P<mask>LS0tLS1CRUdJTi[A-Za-z0-9+/]{30,}={0,2})`, isBase64PrivateKey).startingAt(wordBytes),
}

// inlineSecret finds the data of a Secret written as JSON on one line,
// such as in the last-applied-configuration annotation.
var (
	inlineSecretKind = regexp.MustCompile(q + `kind` + q + `\s*:\s*` + q + `Secret` + q)
	inlineSecretData = regexp.MustCompile(q + `(?:data|stringData)` + q + `\s*:\s*\{([^{}]*)\}`)
	inlinePair       = regexp.MustCompile(q + qValue + q + `\s*:\s*` + q + `(` + qValue + `)` + q)
)

// lineRules applies the rules that look at one line alone; lower is its
// lower-case form.
func (e *engine) lineRules(line, lower []byte) {
	hint := -1
	for i := range lineRules {
		r := &lineRules[i]
		if r.needles == nil {
			if hint < 0 {
				hint = 0
				if e.credentialHint(lower) {
					hint = 1
				}
			}
			if hint == 0 {
				continue
			}
		} else if !e.hasAny(r.needles, lower) {
			continue
		}
		if !holdsAll(line, r.need) {
			continue
		}
		from := 0
		if r.back != nil && !e.hasAny(r.whole, lower) {
			from = e.firstHit(r.needles)
			for from > 0 && r.back[line[from-1]] {
				from--
			}
		}
		for _, m := range r.re.FindAllSubmatchIndex(line[from:], -1) {
			for _, g := range r.groups {
				s, t := from+m[2*g], from+m[2*g+1]
				if m[2*g] < 0 || t <= s || r.check != nil && !r.check(line[s:t]) {
					continue
				}
				e.add(s, t, r.name, nil)
			}
		}
	}
	if e.has(secretNeedle, lower) && bytes.Contains(line, []byte("Secret")) && holdsAll(line, `"`) && inlineSecretKind.Match(line) {
		for _, d := range inlineSecretData.FindAllSubmatchIndex(line, -1) {
			body := line[d[2]:d[3]]
			for _, p := range inlinePair.FindAllSubmatchIndex(body, -1) {
				e.add(d[2]+p[2], d[2]+p[3], RuleSecretData, nil)
			}
		}
	}
}

// firstHit returns where in the current line the first of needles ids
// is; the line holds one.
func (e *engine) firstHit(ids []int) int {
	for k := e.hi; k < len(e.hits); k++ {
		if slices.Contains(ids, e.hits[k].id) {
			return e.hits[k].pos - e.pos
		}
	}
	return 0
}

func (e *engine) hasAny(ids []int, lower []byte) bool {
	for _, id := range ids {
		if e.has(id, lower) {
			return true
		}
	}
	return false
}

// nonTrivial reports whether a credential key's value is worth redacting:
// not empty, a boolean or null.
func nonTrivial(v []byte) bool {
	switch string(bytes.ToLower(bytes.TrimSpace(v))) {
	case "", "true", "false", "null", "nil", "<nil>", "none", "~", "{}", "[]", `""`, "''":
		return false
	}
	return true
}

// isBase64PrivateKey reports whether v, base64, starts with a PEM private
// key (certificates and public keys stay).
func isBase64PrivateKey(v []byte) bool {
	n := min(len(v), 80) / 4 * 4
	dec, err := base64.StdEncoding.DecodeString(string(v[:n]))
	return err == nil && bytes.Contains(dec, []byte("PRIVATE KEY"))
}

var (
	pemBegin = []byte("-----BEGIN ")
	pemEnd   = []byte("-----END ")
	pemTail  = []byte("PRIVATE KEY-----")
)

// pemLine redacts the body of PEM private keys: within the line (as in a
// JSON string with \n escapes) or over the lines up to its END line.
func (e *engine) pemLine(line, lower []byte) {
	if !e.pem && !e.has(pemNeedle, lower) {
		return
	}
	at := 0
	if e.pem {
		body := indentOf(line)
		end := bytes.Index(line, pemEnd)
		if end < 0 {
			e.addPEM(body, len(line))
			return
		}
		e.addPEM(body, end)
		e.pem = false
		at = end + len(pemEnd)
	}
	for {
		b := bytes.Index(line[at:], pemBegin)
		if b < 0 {
			return
		}
		b += at
		rest := line[b+len(pemBegin):]
		t := bytes.Index(rest, []byte("-----"))
		if t < 0 || !bytes.HasSuffix(rest[:t+5], pemTail) || t > 40 {
			at = b + len(pemBegin)
			continue
		}
		start := b + len(pemBegin) + t + 5
		end := bytes.Index(line[start:], pemEnd)
		e.pem, e.pemN = true, 0
		if end < 0 {
			e.addPEM(start, len(line))
			return
		}
		e.addPEM(start, start+end)
		e.pem = false
		at = start + end + len(pemEnd)
	}
}

func (e *engine) addPEM(start, end int) {
	if end <= start {
		return
	}
	e.spans = append(e.spans, span{start: start, end: end, rule: RulePrivateKey, quiet: e.pemN > 0})
	e.pemN++
}

func indentOf(line []byte) int {
	i := 0
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i
}

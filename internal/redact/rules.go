package redact

import (
	"bytes"
	"encoding/base64"
	"regexp"
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

var credentialKey = regexp.MustCompile(`(?i)^[\w.-]*` + credentialKeyword + `$`)

// lineRule is a built-in rule applied to each line on its own. A line is
// matched only when its lower-case form holds one of the needles, so that
// most lines cost a few substring searches and no regular expression.
type lineRule struct {
	name    string
	needles [][]byte
	re      *regexp.Regexp
	groups  []int                 // the groups named mask
	check   func(val []byte) bool // optional: is this match a secret
}

func newLineRule(name string, needles []string, expr string, check func([]byte) bool) lineRule {
	re := regexp.MustCompile(expr)
	r := lineRule{name: name, re: re, check: check}
	for _, n := range needles {
		r.needles = append(r.needles, []byte(n))
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
	newLineRule(RuleCredentialKey, []string{"pass", "secret", "token", "key", "credential"},
		`(?i)`+q+`[\w.-]*`+credentialKeyword+q+`\s*:\s*`+q+`(?P<mask>`+qValue+`)`+q, nonTrivial),
	newLineRule(RuleCredentialKey, []string{"pass", "secret", "token", "key", "credential"},
		`(?i)'[\w.-]*`+credentialKeyword+`'\s*:\s*'(?P<mask>[^']*)'`, nonTrivial),
	newLineRule(RuleCredentialKey, []string{"pass", "secret", "token", "key", "credential"},
		`(?i)(?:^|[^\w.-])[\w.-]*`+credentialKeyword+`\s*=\s*(?:"(?P<mask>[^"]*)"|'(?P<mask>[^']*)'|(?P<mask>[^\s"'&;,]+))`, nonTrivial),
	newLineRule(RuleCredentialKey, []string{"pass", "secret", "token", "key", "credential"},
		`(?i)`+q+`name`+q+`\s*:\s*`+q+`[\w.-]*`+credentialKeyword+q+`\s*,\s*`+q+`value`+q+`\s*:\s*`+q+`(?P<mask>`+qValue+`)`+q, nonTrivial),
	newLineRule(RuleBearerToken, []string{"bearer", "basic"},
		`(?i)(?:\bbearer|authorization`+q+`?\s*[:=]\s*`+q+`?basic)\s+(?P<mask>[A-Za-z0-9._~+/-]{16,}=*)`, nil),
	newLineRule(RuleJWT, []string{"eyj"},
		`\b(?P<mask>eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)`, nil),
	newLineRule(RuleURLPassword, []string{"://"},
		`\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@"'<>\\]+:(?P<mask>[^\s/@"'<>\\]+)@`, nil),
	newLineRule(RuleCloudAccessKey, []string{"akia", "asia", "aida", "aroa", "agpa", "anpa", "anva", "aipa"},
		`\b(?P<mask>(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA)[A-Z0-9]{16})\b`, nil),
	newLineRule(RuleCloudAccessKey, []string{"aiza"},
		`\b(?P<mask>AIza[0-9A-Za-z_-]{35})`, nil),
	newLineRule(RulePrivateKey, []string{"ls0tls1crudjti"},
		`(?P<mask>LS0tLS1CRUdJTi[A-Za-z0-9+/]{30,}={0,2})`, isBase64PrivateKey),
}

// inlineSecret finds the data of a Secret written as JSON on one line,
// such as in the last-applied-configuration annotation.
var (
	inlineSecretKind = regexp.MustCompile(q + `kind` + q + `\s*:\s*` + q + `Secret` + q)
	inlineSecretData = regexp.MustCompile(q + `(?:data|stringData)` + q + `\s*:\s*\{([^{}]*)\}`)
	inlinePair       = regexp.MustCompile(q + qValue + q + `\s*:\s*` + q + `(` + qValue + `)` + q)
)

// lineRules applies the rules that look at one line alone.
func (e *engine) lineRules(line []byte) {
	lower := e.lowerLine(line)
	for i := range lineRules {
		r := &lineRules[i]
		if !containsAny(lower, r.needles) {
			continue
		}
		for _, m := range r.re.FindAllSubmatchIndex(line, -1) {
			for _, g := range r.groups {
				s, t := m[2*g], m[2*g+1]
				if s < 0 || t <= s || r.check != nil && !r.check(line[s:t]) {
					continue
				}
				e.add(s, t, r.name, nil)
			}
		}
	}
	if bytes.Contains(line, []byte("Secret")) && inlineSecretKind.Match(line) {
		for _, d := range inlineSecretData.FindAllSubmatchIndex(line, -1) {
			body := line[d[2]:d[3]]
			for _, p := range inlinePair.FindAllSubmatchIndex(body, -1) {
				e.add(d[2]+p[2], d[2]+p[3], RuleSecretData, nil)
			}
		}
	}
}

func containsAny(b []byte, needles [][]byte) bool {
	for _, n := range needles {
		if bytes.Contains(b, n) {
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
func (e *engine) pemLine(line []byte) {
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

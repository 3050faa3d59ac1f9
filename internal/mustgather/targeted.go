package mustgather

import "strings"

// Targeted is what a targeted gathering of Forklift's must-gather image
// asks for: the PLAN, VM and NS its command sets.
type Targeted struct {
	Plan, VM, Namespace string
}

// ParseTargeted reads the variables a targeted command sets before
// TargetedCommand, as Request builds it (PLAN='p' VM='v' NS='n'
// /usr/bin/targeted) or as a user writes it (PLAN=p /usr/bin/targeted).
// It reports false for any other command.
func ParseTargeted(command string) (Targeted, bool) {
	words, ok := shellWords(command)
	if !ok || len(words) == 0 || words[len(words)-1] != TargetedCommand {
		return Targeted{}, false
	}
	var t Targeted
	for _, w := range words[:len(words)-1] {
		name, value, ok := strings.Cut(w, "=")
		if !ok {
			return Targeted{}, false
		}
		switch name {
		case "PLAN":
			t.Plan = value
		case "VM":
			t.VM = value
		case "NS":
			t.Namespace = value
		default:
			// Another variable is the user's business.
		}
	}
	return t, true
}

// shellWords splits s into words as a POSIX shell does for plain words
// and single- or double-quoted parts (no expansions). It reports false for
// what it does not understand: $, `, unbalanced quotes, operators.
func shellWords(s string) ([]string, bool) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 || strings.ContainsAny(s[i+1:i+1+j], "$`\\") {
				return nil, false
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i++
			inWord = true
		case strings.IndexByte("$`;&|<>()*?[]{}#~", c) >= 0:
			return nil, false
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, true
}

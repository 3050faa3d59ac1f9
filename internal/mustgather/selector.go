package mustgather

import (
	"regexp"
	"strconv"
	"strings"
)

var (
	labelName  = regexp.MustCompile(`^(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	setOp      = regexp.MustCompile(`^(\S+)\s+(in|notin)\s*\((.*)\)$`)
	compareOps = []string{"==", "!=", "=", ">", "<"} // longest first
)

// checkNodeSelector checks a label selector in the syntax of oc's
// --node-selector (and of the Kubernetes API's labelSelector): comma-
// separated requirements key, !key, key=value, key==value, key!=value,
// key in (v1,v2), key notin (v1,v2), key>n, key<n. The API server reads it
// again when the nodes are listed.
func checkNodeSelector(sel string) error {
	if sel == "" {
		return nil
	}
	if err := checkText("node-selector", sel, MaxSelectorLen, false); err != nil {
		return err
	}
	for _, req := range splitRequirements(sel) {
		if msg := checkRequirement(strings.TrimSpace(req)); msg != "" {
			return fieldErr("node-selector", "%q: %s", strings.TrimSpace(req), msg)
		}
	}
	return nil
}

// splitRequirements splits sel at the commas outside parentheses.
func splitRequirements(sel string) []string {
	var reqs []string
	depth, start := 0, 0
	for i, c := range sel {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				reqs = append(reqs, sel[start:i])
				start = i + 1
			}
		}
	}
	return append(reqs, sel[start:])
}

// checkRequirement says what is wrong with one requirement, or "".
func checkRequirement(req string) string {
	if req == "" {
		return "empty requirement"
	}
	if m := setOp.FindStringSubmatch(req); m != nil {
		if msg := checkLabelKey(m[1]); msg != "" {
			return msg
		}
		for v := range strings.SplitSeq(m[3], ",") {
			if msg := checkLabelValue(strings.TrimSpace(v)); msg != "" {
				return msg
			}
		}
		return ""
	}
	for _, op := range compareOps {
		key, value, ok := strings.Cut(req, op)
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if msg := checkLabelKey(key); msg != "" {
			return msg
		}
		if op == ">" || op == "<" {
			if _, err := strconv.ParseInt(value, 10, 64); err != nil {
				return "the value of " + op + " must be an integer"
			}
			return ""
		}
		return checkLabelValue(value)
	}
	return checkLabelKey(strings.TrimSpace(strings.TrimPrefix(req, "!")))
}

// checkLabelKey checks a label key: [prefix/]name, the prefix a DNS-1123
// subdomain, the name at most 63 characters.
func checkLabelKey(key string) string {
	prefix, name, ok := strings.Cut(key, "/")
	if !ok {
		name, prefix = prefix, ""
	} else if len(prefix) > 253 || !dns1123Subdomain.MatchString(prefix) {
		return "label key prefix " + strconv.Quote(prefix) + " must be a DNS-1123 subdomain"
	}
	if len(name) > 63 || !labelName.MatchString(name) {
		return "label key " + strconv.Quote(key) + " is not a valid label name (letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters)"
	}
	return ""
}

// checkLabelValue checks a label value: empty, or as a label name.
func checkLabelValue(v string) string {
	if v != "" && (len(v) > 63 || !labelName.MatchString(v)) {
		return "label value " + strconv.Quote(v) + " is not valid (letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters)"
	}
	return ""
}

// parseBool reads a form's or JSON's true or false, and a checkbox's on;
// empty is false.
func parseBool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "true", "1", "on", "yes":
		return true, true
	case "false", "0", "off", "no", "":
		return false, true
	}
	return false, false
}

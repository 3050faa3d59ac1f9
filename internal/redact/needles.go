package redact

import (
	"encoding/binary"
	"slices"
)

// One pass over a document finds every needle: a gathering's files are
// mostly free of them, and a search per needle would read each file
// dozens of times. The pass looks at every pair of adjacent bytes, eight
// pairs at a time, in a bit set of the pairs that can be part of a
// needle: for each needle one pair, in every case, at the place in the
// needle where text has it least often. Only where the set has a pair is
// the needle itself compared.

// probe is a needle found by its pair at offset off.
type probe struct {
	id  int
	off int
}

var (
	lowerTable [256]byte
	// pairProbes maps a pair of bytes (the first one low) to the probes
	// that look for it: index+1 into probeLists, 0 for none.
	pairProbes [1 << 16]uint8
	probeLists [][]probe
)

// letterWeight is how often a byte comes up in text, roughly, in per
// mille: English letter frequencies, and what logs and manifests are full
// of (blanks, digits, '-', ':', '/'). Bytes not listed count 1.
var letterWeight = func() (w [256]int) {
	for c := range w {
		w[c] = 1
	}
	freq := map[byte]int{'e': 127, 't': 91, 'a': 82, 'o': 75, 'i': 70, 'n': 67, 's': 63, 'h': 61, 'r': 60,
		'd': 43, 'l': 40, 'c': 28, 'u': 28, 'm': 24, 'w': 24, 'f': 22, 'g': 20, 'y': 20, 'p': 19, 'b': 15,
		'v': 10, 'k': 8, 'j': 2, 'x': 2, 'q': 1, 'z': 1, ' ': 150, '-': 30, ':': 30, '/': 20, '_': 10, '.': 20}
	for c, f := range freq {
		w[c] = f
	}
	for c := '0'; c <= '9'; c++ {
		w[c] = 20
	}
	return w
}()

func init() {
	for c := range 256 {
		lowerTable[c] = byte(c)
		if 'A' <= c && c <= 'Z' {
			lowerTable[c] = byte(c) + 'a' - 'A'
		}
	}
	for id, nd := range needles {
		n := nd.s
		off := 0
		for k := 1; k+1 < len(n); k++ {
			if pairWeight(n[k:k+2]) < pairWeight(n[off:off+2]) {
				off = k
			}
		}
		for _, a := range caseVariants(n[off], nd.fold) {
			for _, b := range caseVariants(n[off+1], nd.fold) {
				k := uint16(a) | uint16(b)<<8
				if pairProbes[k] == 0 {
					probeLists = append(probeLists, nil)
					pairProbes[k] = uint8(len(probeLists))
				}
				probeLists[pairProbes[k]-1] = append(probeLists[pairProbes[k]-1], probe{id: id, off: off})
			}
		}
	}
}

// commonPairs are pairs of letters that the logs and manifests of a
// gathering are full of (apiVersion, v1beta1, disk, key, token), which
// the letter weights alone would take for rare.
var commonPairs = []string{"iv", "be", "sk", "ke", "ey", "ap", "pi", "ok", "ta", "ti"}

// pairWeight is how often a pair of bytes comes up in text, roughly.
func pairWeight(p []byte) int {
	w := letterWeight[p[0]] * letterWeight[p[1]]
	for _, c := range commonPairs {
		if string(p) == c {
			w *= 50
		}
	}
	return w
}

func caseVariants(c byte, fold bool) []byte {
	if fold && 'a' <= c && c <= 'z' {
		return []byte{c, c - 'a' + 'A'}
	}
	return []byte{c}
}

// findNeedles appends to hits every needle in b, in order.
func findNeedles(hits []hit, b []byte) []hit {
	from := len(hits)
	sorted := true
	i := 0
	// Seven pairs at a time, those that start at b[i] to b[i+6].
	for ; i+8 <= len(b); i += 7 {
		x := binary.LittleEndian.Uint64(b[i:])
		if pairProbes[uint16(x)]|pairProbes[uint16(x>>8)]|pairProbes[uint16(x>>16)]|pairProbes[uint16(x>>24)]|
			pairProbes[uint16(x>>32)]|pairProbes[uint16(x>>40)]|pairProbes[uint16(x>>48)] == 0 {
			continue
		}
		for j := range 7 {
			if pairProbes[uint16(x>>(8*j))] != 0 {
				hits, sorted = probeAt(hits, b, i+j, sorted)
			}
		}
	}
	for ; i+1 < len(b); i++ {
		hits, sorted = probeAt(hits, b, i, sorted)
	}
	if !sorted {
		// Needles found by pairs at different offsets came out of order.
		slices.SortStableFunc(hits[from:], func(a, b hit) int { return a.pos - b.pos })
	}
	return hits
}

// probeAt appends the needles whose pair is at b[i:i+2].
func probeAt(hits []hit, b []byte, i int, sorted bool) ([]hit, bool) {
	k := uint16(b[i]) | uint16(b[i+1])<<8
	p := pairProbes[k]
	if p == 0 {
		return hits, sorted
	}
next:
	for _, pr := range probeLists[p-1] {
		n := needles[pr.id]
		s := i - pr.off
		if s < 0 || s+len(n.s) > len(b) {
			continue
		}
		if !n.fold {
			if string(b[s:s+len(n.s)]) != string(n.s) {
				continue
			}
		} else {
			for j, c := range n.s {
				if lowerTable[b[s+j]] != c {
					continue next
				}
			}
		}
		if len(hits) > 0 && hits[len(hits)-1].pos > s {
			sorted = false
		}
		hits = append(hits, hit{pos: s, id: pr.id})
	}
	return hits, sorted
}

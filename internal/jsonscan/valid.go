package jsonscan

import "encoding/binary"

// maxNestingDepth is encoding/json's limit on nested arrays and objects;
// Valid refuses deeper input as json.Valid does.
const maxNestingDepth = 10000

// Valid reports whether data is one JSON value with optional white space
// around it, giving exactly json.Valid's answer (bytes that are not UTF-8
// inside strings are accepted, nesting deeper than 10,000 is not). It is
// several times faster on what a mediator validates, packed messages whose
// bulk is long base64 strings: it skips string text eight bytes at a time
// where encoding/json's scanner steps through a state machine per byte. It
// allocates only for nesting deeper than 64.
func Valid(data []byte) bool {
	var buf [64]byte
	closers := buf[:0] // the closing byte of each open array or object
	i := 0
	for {
		// A value starts at i.
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch c := data[i]; c {
		case '{', '[':
			if len(closers) >= maxNestingDepth {
				return false
			}
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			i = skipSpace(data, i+1)
			if i < len(data) && data[i] == closer {
				i++
				break // an empty container is a complete value
			}
			closers = append(closers, closer)
			if closer == '}' {
				if i = objectKey(data, i); i < 0 {
					return false
				}
			}
			continue // its first value
		case '"':
			if i = stringEnd(data, i+1); i < 0 {
				return false
			}
		case 't':
			if i = literalEnd(data, i, "true"); i < 0 {
				return false
			}
		case 'f':
			if i = literalEnd(data, i, "false"); i < 0 {
				return false
			}
		case 'n':
			if i = literalEnd(data, i, "null"); i < 0 {
				return false
			}
		default:
			if i = numberEnd(data, i); i < 0 {
				return false
			}
		}
		// A value ended at i: close containers until one takes another value.
		for {
			i = skipSpace(data, i)
			if len(closers) == 0 {
				return i == len(data)
			}
			if i >= len(data) {
				return false
			}
			closer := closers[len(closers)-1]
			if data[i] == closer {
				closers = closers[:len(closers)-1]
				i++
				continue
			}
			if data[i] != ',' {
				return false
			}
			i++
			if closer == '}' {
				if i = objectKey(data, skipSpace(data, i)); i < 0 {
					return false
				}
			}
			break
		}
	}
}

// objectKey returns the index after the key string at data[i] and the colon
// that follows it, or -1.
func objectKey(data []byte, i int) int {
	if i >= len(data) || data[i] != '"' {
		return -1
	}
	if i = stringEnd(data, i+1); i < 0 {
		return -1
	}
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != ':' {
		return -1
	}
	return i + 1
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainWord reports whether none of the eight bytes of x is a quote, a
// backslash or a control byte (below 0x20): the usual bit tricks, which may
// report false for a plain word but never true for one that is not.
func plainWord(x uint64) bool {
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	below := (x - ones*0x20) & ^x & highs
	return hasZero(x^(ones*'"'))|hasZero(x^(ones*'\\'))|below == 0
}

// stringEnd returns the index after the closing quote of the string whose
// text starts at data[i], or -1 if it is not a valid JSON string.
func stringEnd(data []byte, i int) int {
	for i < len(data) {
		if i+8 <= len(data) && plainWord(binary.LittleEndian.Uint64(data[i:])) {
			i += 8
			continue
		}
		switch c := data[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i = escapeEnd(data, i+1); i < 0 {
				return -1
			}
		case c < 0x20:
			return -1
		default:
			i++
		}
	}
	return -1
}

// escapeEnd returns the index after the escape whose text (after the
// backslash) starts at data[i], or -1.
func escapeEnd(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 1
	case 'u':
		if i+5 > len(data) {
			return -1
		}
		for _, h := range data[i+1 : i+5] {
			if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
				return -1
			}
		}
		return i + 5
	}
	return -1
}

func literalEnd(data []byte, i int, lit string) int {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// numberEnd returns the index after the number at data[i]
// (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?), or -1.
func numberEnd(data []byte, i int) int {
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		i = digitsEnd(data, i+1)
	default:
		return -1
	}
	if i < len(data) && data[i] == '.' {
		j := digitsEnd(data, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digitsEnd(data, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digitsEnd(data []byte, i int) int {
	for i < len(data) && '0' <= data[i] && data[i] <= '9' {
		i++
	}
	return i
}

package diddoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file holds a tiny order-preserving JSON tree and a serialiser that
// produces the same bytes as JavaScript's JSON.stringify. Credo derives
// did:peer:1 and did:peer:4 identifiers from JSON.stringify output, so to
// check (or produce) them byte-exactly we must keep member order and format
// strings and numbers the JavaScript way.

type jsKind uint8

const (
	jsNull jsKind = iota
	jsBool
	jsNumber
	jsString
	jsArray
	jsObject
)

type jsNode struct {
	kind jsKind
	b    bool
	num  string // json.Number text
	str  string
	arr  []*jsNode
	keys []string
	vals []*jsNode
}

const maxJSONDepth = 64

// parseOrdered parses one JSON value (and nothing after it), keeping object
// member order. Duplicate member names are rejected (JSON.parse would keep
// the last, silently; refusing is safer).
func parseOrdered(data []byte) (*jsNode, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := parseNode(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after JSON value")
	}
	return n, nil
}

func parseNode(dec *json.Decoder, depth int) (*jsNode, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("JSON nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &jsNode{kind: jsNull}, nil
	case bool:
		return &jsNode{kind: jsBool, b: t}, nil
	case json.Number:
		return &jsNode{kind: jsNumber, num: t.String()}, nil
	case string:
		return &jsNode{kind: jsString, str: t}, nil
	case json.Delim:
		switch t {
		case '[':
			n := &jsNode{kind: jsArray}
			for dec.More() {
				c, err := parseNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.arr = append(n.arr, c)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return n, nil
		case '{':
			n := &jsNode{kind: jsObject}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errors.New("object key is not a string")
				}
				if seen[k] {
					return nil, fmt.Errorf("duplicate member %q", truncate(k))
				}
				seen[k] = true
				v, err := parseNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k)
				n.vals = append(n.vals, v)
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			return n, nil
		}
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// get returns the member k of an object node, or nil.
func (n *jsNode) get(k string) *jsNode {
	if n == nil || n.kind != jsObject {
		return nil
	}
	for i, kk := range n.keys {
		if kk == k {
			return n.vals[i]
		}
	}
	return nil
}

// without returns a shallow copy of an object node without member k.
func (n *jsNode) without(k string) *jsNode {
	c := &jsNode{kind: jsObject}
	for i, kk := range n.keys {
		if kk != k {
			c.keys = append(c.keys, kk)
			c.vals = append(c.vals, n.vals[i])
		}
	}
	return c
}

// set replaces member k in place or appends it (like assigning a property
// on a JavaScript object).
func (n *jsNode) set(k string, v *jsNode) {
	for i, kk := range n.keys {
		if kk == k {
			n.vals[i] = v
			return
		}
	}
	n.keys = append(n.keys, k)
	n.vals = append(n.vals, v)
}

func jsStr(s string) *jsNode { return &jsNode{kind: jsString, str: s} }

// stringify serialises like JSON.stringify(value) with no indentation.
func (n *jsNode) stringify() ([]byte, error) {
	var buf bytes.Buffer
	if err := n.write(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (n *jsNode) write(buf *bytes.Buffer) error {
	switch n.kind {
	case jsNull:
		buf.WriteString("null")
	case jsBool:
		buf.WriteString(strconv.FormatBool(n.b))
	case jsNumber:
		s, err := jsNumberString(n.num)
		if err != nil {
			return err
		}
		buf.WriteString(s)
	case jsString:
		writeJSString(buf, n.str)
	case jsArray:
		buf.WriteByte('[')
		for i, c := range n.arr {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := c.write(buf); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case jsObject:
		buf.WriteByte('{')
		for i, k := range n.keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSString(buf, k)
			buf.WriteByte(':')
			if err := n.vals[i].write(buf); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	}
	return nil
}

// writeJSString quotes s the way JSON.stringify does: only '"', '\\' and
// control characters are escaped; everything else is written as UTF-8.
func writeJSString(buf *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	buf.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			if c < utf8.RuneSelf {
				buf.WriteByte(c)
				i++
				continue
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			buf.WriteRune(r)
			i += size
			continue
		}
		switch c {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\b':
			buf.WriteString(`\b`)
		case '\f':
			buf.WriteString(`\f`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			buf.WriteString(`\u00`)
			buf.WriteByte(hex[c>>4])
			buf.WriteByte(hex[c&0xf])
		}
		i++
	}
	buf.WriteByte('"')
}

// jsNumberString formats a JSON number the way JavaScript's
// Number.prototype.toString does (ECMA-262 Number::toString).
func jsNumberString(num string) (string, error) {
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", fmt.Errorf("number %q out of range", truncate(num))
	}
	if f == 0 {
		return "0", nil
	}
	sign := ""
	if f < 0 {
		sign = "-"
		f = -f
	}
	// Shortest round-tripping digits and exponent: d.ddddde±x
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, err := strconv.Atoi(expStr)
	if err != nil {
		return "", fmt.Errorf("number %q: %v", truncate(num), err)
	}
	k := len(digits)
	n := exp + 1 // position of the decimal point relative to the digits
	var out string
	switch {
	case k <= n && n <= 21:
		out = digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		out = digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		out = "0." + strings.Repeat("0", -n) + digits
	default:
		es := "+"
		if n-1 < 0 {
			es = "-"
		}
		ev := n - 1
		if ev < 0 {
			ev = -ev
		}
		if k == 1 {
			out = digits + "e" + es + strconv.Itoa(ev)
		} else {
			out = digits[:1] + "." + digits[1:] + "e" + es + strconv.Itoa(ev)
		}
	}
	return sign + out, nil
}

// jsStringifyValue marshals v with encoding/json and re-serialises the
// result JSON.stringify-style (struct field order is kept).
func jsStringifyValue(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	n, err := parseOrdered(raw)
	if err != nil {
		return nil, err
	}
	return n.stringify()
}

package main

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	qrcode "github.com/skip2/go-qrcode"
)

// TestPrintQR decodes the half blocks back into modules and compares them
// with the code the library builds for the same text.
func TestPrintQR(t *testing.T) {
	for _, text := range []string{
		"https://mediator.example.org?oob=" + strings.Repeat("eyJAdHlwZSI6Imh0dHBzOi8vZGlkY29tbS5vcmcvb3V0LW9mLWJhbmQvMS4xL2ludml0YXRpb24i", 8),
		"x",
	} {
		var buf bytes.Buffer
		if err := printQR(&buf, text); err != nil {
			t.Fatal(err)
		}
		q, err := qrcode.New(text, qrcode.Low)
		if err != nil {
			t.Fatal(err)
		}
		want := q.Bitmap()
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		if len(lines) != (len(want)+1)/2 {
			t.Fatalf("%d lines for %d module rows", len(lines), len(want))
		}
		for i, line := range lines {
			if n := utf8.RuneCountInString(line); n != len(want[0]) {
				t.Fatalf("line %d is %d cells wide, want %d", i, n, len(want[0]))
			}
			for x, r := range []rune(line) {
				var top, bottom bool // light?
				switch r {
				case '█':
					top, bottom = true, true
				case '▀':
					top = true
				case '▄':
					bottom = true
				case ' ':
				default:
					t.Fatalf("line %d has %q", i, r)
				}
				if top != !want[2*i][x] {
					t.Fatalf("module (%d,%d) drawn wrong", x, 2*i)
				}
				if 2*i+1 < len(want) && bottom != !want[2*i+1][x] {
					t.Fatalf("module (%d,%d) drawn wrong", x, 2*i+1)
				}
			}
		}
		// The quiet zone is light: the first line is all full blocks.
		if strings.Trim(lines[0], "█") != "" {
			t.Errorf("first line is not quiet zone: %q", lines[0])
		}
	}
}

func TestPrintQRTooLong(t *testing.T) {
	if err := printQR(&bytes.Buffer{}, strings.Repeat("x", 8000)); err == nil {
		t.Fatal("8000 bytes made a QR code")
	}
}

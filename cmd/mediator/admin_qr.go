package main

import (
	"bufio"
	"fmt"
	"io"

	qrcode "github.com/skip2/go-qrcode"
)

// printQR writes text as a QR code for a terminal: each character cell
// holds two modules, one above the other, drawn with the Unicode half
// blocks ▀ ▄ █ and a space. Light modules (and the 4-module quiet zone the
// code needs around it) are drawn, dark modules left blank: the code reads
// correctly on the common dark terminal background. It uses the lowest
// error-correction level, which gives the smallest code for a long
// invitation URL. Text too long for any QR code is an error.
func printQR(w io.Writer, text string) error {
	q, err := qrcode.New(text, qrcode.Low)
	if err != nil {
		return fmt.Errorf("qr code: %w", err)
	}
	bits := q.Bitmap() // [y][x], true = dark, quiet zone included
	bw := bufio.NewWriter(w)
	for y := 0; y < len(bits); y += 2 {
		for x := range bits[y] {
			top := !bits[y][x]
			bottom := y+1 < len(bits) && !bits[y+1][x]
			switch {
			case top && bottom:
				bw.WriteRune('█')
			case top:
				bw.WriteRune('▀')
			case bottom:
				bw.WriteRune('▄')
			default:
				bw.WriteByte(' ')
			}
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

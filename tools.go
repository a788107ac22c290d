//go:build tools

// Pins modules that packages being written now will import; remove a line
// once a real import of it exists.
package tools

import (
	_ "github.com/skip2/go-qrcode"
	_ "gopkg.in/yaml.v3"
)

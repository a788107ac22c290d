// Package deps pins the project's direct dependencies while the packages
// that use them are being written. Delete once every import is real.
package deps

import (
	_ "filippo.io/edwards25519"
	_ "github.com/gorilla/websocket"
	_ "github.com/hyperledger/aries-framework-go/pkg/didcomm/protocol/decorator"
	_ "github.com/hyperledger/aries-framework-go/pkg/doc/did"
	_ "github.com/hyperledger/aries-framework-go/pkg/vdr/fingerprint"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/mr-tron/base58"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/urfave/cli/v2"
	_ "golang.org/x/crypto/nacl/box"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "github.com/google/uuid"
)

package mediator

import (
	"crypto/ed25519"
	"fmt"

	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/keyring"
)

func keyringVerkey(priv ed25519.PrivateKey) string { return keyring.Verkey(publicKey(priv)) }

// decodeVerkey turns a stored base58 verkey into a public key.
func decodeVerkey(verkey string) (ed25519.PublicKey, error) {
	b, err := base58.Decode(verkey)
	if err != nil {
		return nil, fmt.Errorf("verkey %q: %w", verkey, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("verkey %q: %d bytes, want %d", verkey, len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

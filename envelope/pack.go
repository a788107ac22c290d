package envelope

import (
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/mr-tron/base58"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/nacl/secretbox"
)

// PackAuthcrypt encrypts plaintext for each recipient, authenticated as
// sender: the recipients learn sender's verkey and that only its holder could
// have packed the message. The result is a complete packed message.
//
// sender's public half (its last 32 bytes) is what recipients see; it must be
// the key derived from its seed, as with any key from package ed25519.
func PackAuthcrypt(plaintext []byte, sender ed25519.PrivateKey, recipients ...ed25519.PublicKey) ([]byte, error) {
	if len(sender) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("envelope: sender private key is %d bytes, want %d", len(sender), ed25519.PrivateKeySize)
	}
	// Recipients would refuse a message from an unusable sender key; say so
	// here rather than emit it.
	k, err := NewKey(sender)
	if err != nil {
		return nil, fmt.Errorf("envelope: sender key: %w", err)
	}
	return pack(plaintext, k, recipients)
}

// PackAuthcryptWith is PackAuthcrypt with a sender Key made once: repeated
// messages to the same recipient then reuse their crypto_box key (see Key).
func PackAuthcryptWith(plaintext []byte, sender *Key, recipients ...ed25519.PublicKey) ([]byte, error) {
	return pack(plaintext, sender, recipients)
}

// PackAnoncrypt encrypts plaintext for each recipient without identifying the
// sender. Forwards, and anything sent to a mediator's routing key, are packed
// this way.
func PackAnoncrypt(plaintext []byte, recipients ...ed25519.PublicKey) ([]byte, error) {
	return pack(plaintext, nil, recipients)
}

// Header fragments. Every value written between them is base58 or unpadded
// base64url, neither of which needs JSON escaping, so the header is built by
// appending rather than through encoding/json. The field order is Askar's.
const (
	hdrAuthcrypt = `{"enc":"` + encLabel + `","typ":"` + typLabel + `","alg":"` + algAuthcrypt + `","recipients":[`
	hdrAnoncrypt = `{"enc":"` + encLabel + `","typ":"` + typLabel + `","alg":"` + algAnoncrypt + `","recipients":[`
	hdrEncKey    = `{"encrypted_key":"`
	hdrKid       = `","header":{"kid":"`
	hdrSender    = `","sender":"`
	hdrIV        = `","iv":"`
	hdrRecipEnd  = `"}}`
	hdrEnd       = `]}`

	outProtected  = `{"protected":"`
	outIV         = `","iv":"`
	outCiphertext = `","ciphertext":"`
	outTag        = `","tag":"`
	outEnd        = `"}`
)

// recipientHeaderSize bounds one recipient's header entry (plus a comma), to
// size the buffer once. Unpadded base64 of n bytes is (8n+5)/6 characters.
const recipientHeaderSize = len(hdrEncKey) + (anonKeySize*8+5)/6 + len(hdrKid) + maxB58KeyLen +
	len(hdrSender) + (maxSenderBoxSize*8+5)/6 + len(hdrIV) + (boxNonceSize*8+5)/6 +
	len(hdrRecipEnd) + 1

func pack(plaintext []byte, sender *Key, recipients []ed25519.PublicKey) ([]byte, error) {
	switch n := len(recipients); {
	case n == 0:
		return nil, errors.New("envelope: no recipients")
	case n > MaxRecipients:
		return nil, fmt.Errorf("envelope: %d recipients, limit is %d", n, MaxRecipients)
	}
	anon := sender == nil
	b64 := base64.RawURLEncoding // output encoding: unpadded base64url, as Askar emits

	var cek [keySize]byte
	defer clear(cek[:])
	if _, err := rand.Read(cek[:]); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}

	header := make([]byte, 0, len(hdrAuthcrypt)+len(hdrEnd)+len(recipients)*recipientHeaderSize)
	if anon {
		header = append(header, hdrAnoncrypt...)
	} else {
		header = append(header, hdrAuthcrypt...)
	}
	var keyBuf [anonKeySize]byte // wrapped content key
	for i, pub := range recipients {
		var to peer
		var shared *sharedKey
		if anon {
			if err := to.set(pub); err != nil {
				return nil, fmt.Errorf("envelope: recipient %d: %w", i, err)
			}
		} else {
			var err error
			if shared, err = sender.shared(pub); err != nil {
				return nil, fmt.Errorf("envelope: recipient %d: %w", i, err)
			}
		}
		if i > 0 {
			header = append(header, ',')
		}
		header = append(header, hdrEncKey...)
		if anon {
			wrapped, err := sealAnonymous(keyBuf[:0], cek[:], &to)
			if err != nil {
				return nil, fmt.Errorf("envelope: %w", err)
			}
			header = b64.AppendEncode(header, wrapped)
			header = append(header, hdrKid...)
			header = append(header, base58.Encode(pub)...)
		} else {
			var iv [boxNonceSize]byte
			if _, err := rand.Read(iv[:]); err != nil {
				return nil, fmt.Errorf("envelope: %w", err)
			}
			wrapped := secretbox.Seal(keyBuf[:0], cek[:], &iv, &shared.box) // crypto_box_easy with its key
			header = b64.AppendEncode(header, wrapped)
			sealedSender, err := sender.sealedSender(shared)
			if err != nil {
				return nil, fmt.Errorf("envelope: %w", err)
			}
			header = append(header, hdrKid...)
			header = append(header, base58.Encode(pub)...)
			header = append(header, hdrSender...)
			header = b64.AppendEncode(header, sealedSender)
			header = append(header, hdrIV...)
			header = b64.AppendEncode(header, iv[:])
		}
		header = append(header, hdrRecipEnd...)
	}
	header = append(header, hdrEnd...)

	var nonce [chacha20poly1305.NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	aead, err := chacha20poly1305.New(cek[:])
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}

	out := make([]byte, 0, len(outProtected)+b64.EncodedLen(len(header))+len(outIV)+b64.EncodedLen(len(nonce))+
		len(outCiphertext)+b64.EncodedLen(len(plaintext))+len(outTag)+b64.EncodedLen(tagSize)+len(outEnd))
	out = append(out, outProtected...)
	start := len(out)
	out = b64.AppendEncode(out, header)
	aad := out[start:] // the protected text is the AAD; out never grows past its capacity
	sealed := aead.Seal(nil, nonce[:], plaintext, aad)
	ciphertext, tag := sealed[:len(plaintext)], sealed[len(plaintext):]

	out = append(out, outIV...)
	out = b64.AppendEncode(out, nonce[:])
	out = append(out, outCiphertext...)
	out = b64.AppendEncode(out, ciphertext)
	out = append(out, outTag...)
	out = b64.AppendEncode(out, tag)
	out = append(out, outEnd...)
	return out, nil
}

// newAEAD returns the content cipher for a nonce of nonceSize bytes:
// XChaCha20-Poly1305 for 24, else ChaCha20-Poly1305 IETF (12), which is what
// every deployed packer uses despite the "xchacha20poly1305_ietf" label.
func newAEAD(key []byte, nonceSize int) (cipher.AEAD, error) {
	if nonceSize == chacha20poly1305.NonceSizeX {
		return chacha20poly1305.NewX(key)
	}
	return chacha20poly1305.New(key)
}

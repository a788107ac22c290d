// Package keyring is the mediator's key custody: Ed25519 keys whose seeds
// are stored sealed under the deployment's master key (AES-256-GCM) and
// opened into an in-memory cache, so that unpacking a message never waits
// on the database once a key has been seen.
package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/envelope"
	"github.com/openmediator/mediator/record"
)

// MasterKeySize is the size of the master key in bytes.
const MasterKeySize = 32

// ErrUnknownKey is returned for a verkey the mediator does not hold.
var ErrUnknownKey = errors.New("keyring: unknown key")

// ErrWrongMasterKey is returned when stored keys cannot be opened: the
// configured master key is not the one they were sealed with.
var ErrWrongMasterKey = errors.New("keyring: stored keys cannot be opened with this master key")

// ParseMasterKey reads a 32-byte key written as 64 hex characters or as
// standard base64.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*MasterKeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == MasterKeySize {
		return b, nil
	}
	return nil, fmt.Errorf("master key must be %d bytes written as %d hex characters or standard base64 (generate one with: openssl rand -hex 32)", MasterKeySize, 2*MasterKeySize)
}

// Store is the persistence the keyring needs (mediator.Store satisfies it).
type Store interface {
	WithKeyCreationLock(ctx context.Context, fn func(ctx context.Context) error) error
	InsertKey(ctx context.Context, k record.Key) error
	KeyByVerkey(ctx context.Context, verkey string) (record.Key, error)
	KeysByPurpose(ctx context.Context, p record.KeyPurpose) ([]record.Key, error)
}

// Keyring opens and caches the mediator's keys.
type Keyring struct {
	store Store
	aead  cipher.AEAD

	mu    sync.RWMutex
	cache map[string]*envelope.Key // by verkey; the X25519 forms derived once
}

// New returns a keyring sealing with master (32 bytes).
func New(store Store, master []byte) (*Keyring, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("keyring: master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	block, err := aes.NewCipher(master)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return &Keyring{store: store, aead: aead, cache: make(map[string]*envelope.Key)}, nil
}

// Verkey is the base58 form of an Ed25519 public key.
func Verkey(pub ed25519.PublicKey) string { return base58.Encode(pub) }

// EnsureKey returns the deployment's single key of purpose p, creating it
// under the cross-instance lock if no instance has made it yet.
func (k *Keyring) EnsureKey(ctx context.Context, p record.KeyPurpose) (ed25519.PrivateKey, error) {
	var priv ed25519.PrivateKey
	err := k.store.WithKeyCreationLock(ctx, func(ctx context.Context) error {
		existing, err := k.store.KeysByPurpose(ctx, p)
		if err != nil {
			return err
		}
		if len(existing) > 0 {
			key, err := k.open(existing[0])
			if err != nil {
				return err
			}
			priv = key.PrivateKey()
			return nil
		}
		priv, err = k.create(ctx, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("keyring: ensure %s key: %w", p, err)
	}
	return priv, nil
}

// NewKey creates, stores and caches a fresh key of purpose p.
func (k *Keyring) NewKey(ctx context.Context, p record.KeyPurpose) (ed25519.PrivateKey, error) {
	priv, err := k.create(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("keyring: new %s key: %w", p, err)
	}
	return priv, nil
}

func (k *Keyring) create(ctx context.Context, p record.KeyPurpose) (ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	verkey := Verkey(pub)
	sealed, err := k.seal(priv.Seed(), verkey)
	if err != nil {
		return nil, err
	}
	rec := record.Key{Verkey: verkey, Purpose: p, SealedPrivate: sealed, CreatedAt: time.Now().UTC()}
	if err := k.store.InsertKey(ctx, rec); err != nil {
		return nil, err
	}
	key, err := k.remember(verkey, priv)
	if err != nil {
		return nil, err
	}
	return key.PrivateKey(), nil
}

// PrivateKey returns the private key for a base58 verkey: from memory, or
// opened from the store once and then kept.
func (k *Keyring) PrivateKey(ctx context.Context, verkey string) (ed25519.PrivateKey, error) {
	key, err := k.EnvelopeKey(ctx, verkey)
	if err != nil {
		return nil, err
	}
	return key.PrivateKey(), nil
}

// EnvelopeKey returns the key for a base58 verkey prepared for opening
// envelopes (envelope.Envelope.OpenWith), like PrivateKey.
func (k *Keyring) EnvelopeKey(ctx context.Context, verkey string) (*envelope.Key, error) {
	k.mu.RLock()
	key, ok := k.cache[verkey]
	k.mu.RUnlock()
	if ok {
		return key, nil
	}
	rec, err := k.store.KeyByVerkey(ctx, verkey)
	if errors.Is(err, record.ErrNotFound) {
		return nil, ErrUnknownKey
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: load %s: %w", verkey, err)
	}
	return k.open(rec)
}

// Cached returns a key only if it is already in memory.
func (k *Keyring) Cached(verkey string) (ed25519.PrivateKey, bool) {
	k.mu.RLock()
	key, ok := k.cache[verkey]
	k.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return key.PrivateKey(), true
}

func (k *Keyring) open(rec record.Key) (*envelope.Key, error) {
	ns := k.aead.NonceSize()
	if len(rec.SealedPrivate) < ns+k.aead.Overhead() {
		return nil, fmt.Errorf("keyring: key %s: sealed value too short", rec.Verkey)
	}
	seed, err := k.aead.Open(nil, rec.SealedPrivate[:ns], rec.SealedPrivate[ns:], []byte(rec.Verkey))
	if err != nil {
		return nil, fmt.Errorf("%w (key %s)", ErrWrongMasterKey, rec.Verkey)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("keyring: key %s: bad seed length", rec.Verkey)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if Verkey(priv.Public().(ed25519.PublicKey)) != rec.Verkey {
		return nil, fmt.Errorf("keyring: key %s: seed does not match verkey", rec.Verkey)
	}
	return k.remember(rec.Verkey, priv)
}

// seal encrypts a seed; the verkey is bound as associated data so a sealed
// value cannot be swapped onto another key's row.
func (k *Keyring) seal(seed []byte, verkey string) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(seed)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(nonce, nonce, seed, []byte(verkey)), nil
}

func (k *Keyring) remember(verkey string, priv ed25519.PrivateKey) (*envelope.Key, error) {
	key, err := envelope.NewKey(priv)
	if err != nil {
		return nil, fmt.Errorf("keyring: key %s: %w", verkey, err)
	}
	k.mu.Lock()
	k.cache[verkey] = key
	k.mu.Unlock()
	return key, nil
}

package keyring_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mr-tron/base58"

	"github.com/openmediator/mediator/keyring"
	"github.com/openmediator/mediator/memstore"
	"github.com/openmediator/mediator/record"
)

func masterKey(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, keyring.MasterKeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func newKeyring(t *testing.T, s keyring.Store, master []byte) *keyring.Keyring {
	t.Helper()
	k, err := keyring.New(s, master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func verkeyOf(priv ed25519.PrivateKey) string {
	return keyring.Verkey(priv.Public().(ed25519.PublicKey))
}

func TestParseMasterKey(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i*7 + 3)
	}
	hexKey := hex.EncodeToString(key)
	b64Key := base64.StdEncoding.EncodeToString(key)
	tests := []struct {
		name string
		in   string
		want []byte // nil = error
	}{
		{"hex lower", hexKey, key},
		{"hex upper", strings.ToUpper(hexKey), key},
		{"hex with newline", hexKey + "\n", key},
		{"hex with surrounding spaces", "  " + hexKey + " \t", key},
		{"base64 std padded", b64Key, key},
		{"base64 with newline", b64Key + "\n", key},
		{"all zero hex", strings.Repeat("0", 64), make([]byte, 32)},
		{"empty", "", nil},
		{"spaces only", "   ", nil},
		{"hex 31 bytes", hexKey[:62], nil},
		{"hex 33 bytes", hexKey + "ab", nil},
		{"hex odd length", hexKey[:63], nil},
		{"64 non-hex chars", strings.Repeat("g", 64), nil},
		{"64 base64 chars (48 bytes)", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 48)), nil},
		{"base64 unpadded", strings.TrimRight(b64Key, "="), nil},
		{"base64 31 bytes", base64.StdEncoding.EncodeToString(key[:31]), nil},
		{"base64 33 bytes", base64.StdEncoding.EncodeToString(append(append([]byte{}, key...), 1)), nil},
		{"base64url alphabet", base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)[:32]), nil},
		{"hex with 0x prefix", "0x" + hexKey, nil},
		{"hex with inner space", hexKey[:32] + " " + hexKey[32:], nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keyring.ParseMasterKey(tc.in)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("ParseMasterKey(%q) = %x, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMasterKey(%q): %v", tc.in, err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("ParseMasterKey(%q) = %x, want %x", tc.in, got, tc.want)
			}
		})
	}
}

func TestNewRejectsWrongMasterKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := keyring.New(memstore.New(memstore.Options{}), make([]byte, n)); err == nil {
			t.Errorf("New with a %d-byte master key succeeded", n)
		}
	}
}

func TestEnsureKeyIsStable(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(memstore.Options{})
	master := masterKey(t)
	k1 := newKeyring(t, store, master)

	inv1, err := k1.EnsureKey(ctx, record.PurposeInvitation)
	if err != nil {
		t.Fatal(err)
	}
	inv2, err := k1.EnsureKey(ctx, record.PurposeInvitation)
	if err != nil {
		t.Fatal(err)
	}
	if !inv1.Equal(inv2) {
		t.Fatal("EnsureKey returned a different key the second time")
	}
	routing, err := k1.EnsureKey(ctx, record.PurposeRouting)
	if err != nil {
		t.Fatal(err)
	}
	if routing.Equal(inv1) {
		t.Fatal("routing and invitation keys are the same key")
	}

	// A second keyring (another instance) on the same store gets the same keys.
	k2 := newKeyring(t, store, master)
	if _, ok := k2.Cached(verkeyOf(inv1)); ok {
		t.Fatal("a fresh keyring already has the key cached")
	}
	inv3, err := k2.EnsureKey(ctx, record.PurposeInvitation)
	if err != nil {
		t.Fatal(err)
	}
	if !inv3.Equal(inv1) {
		t.Fatal("a second keyring on the same store made another invitation key")
	}
	routing2, err := k2.EnsureKey(ctx, record.PurposeRouting)
	if err != nil {
		t.Fatal(err)
	}
	if !routing2.Equal(routing) {
		t.Fatal("a second keyring on the same store made another routing key")
	}
	for _, p := range []record.KeyPurpose{record.PurposeInvitation, record.PurposeRouting} {
		keys, err := store.KeysByPurpose(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 {
			t.Fatalf("%d %s keys stored, want 1", len(keys), p)
		}
	}
	// The store holds a sealed seed, never the plain one.
	rec, err := store.KeyByVerkey(ctx, verkeyOf(inv1))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec.SealedPrivate, inv1.Seed()) {
		t.Fatal("the stored key contains the plain seed")
	}
	if rec.Purpose != record.PurposeInvitation {
		t.Fatalf("stored purpose %q", rec.Purpose)
	}
}

func TestNewKeyAndPrivateKey(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(memstore.Options{})
	master := masterKey(t)
	k1 := newKeyring(t, store, master)
	a, err := k1.NewKey(ctx, record.PurposeConnection)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k1.NewKey(ctx, record.PurposeConnection)
	if err != nil {
		t.Fatal(err)
	}
	if a.Equal(b) {
		t.Fatal("NewKey returned the same key twice")
	}
	if got, ok := k1.Cached(verkeyOf(a)); !ok || !got.Equal(a) {
		t.Fatal("NewKey did not cache the key")
	}
	keys, err := store.KeysByPurpose(ctx, record.PurposeConnection)
	if err != nil || len(keys) != 2 {
		t.Fatalf("KeysByPurpose(connection) = %d keys, %v; want 2", len(keys), err)
	}

	k2 := newKeyring(t, store, master)
	got, err := k2.PrivateKey(ctx, verkeyOf(b))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(b) {
		t.Fatal("PrivateKey from the store differs from the created key")
	}
	if _, ok := k2.Cached(verkeyOf(b)); !ok {
		t.Fatal("PrivateKey did not cache the opened key")
	}
	// The cached key signs like the original.
	msg := []byte("hello")
	if !ed25519.Verify(b.Public().(ed25519.PublicKey), msg, ed25519.Sign(got, msg)) {
		t.Fatal("opened key does not sign for its verkey")
	}
}

func TestPrivateKeyUnknown(t *testing.T) {
	ctx := context.Background()
	k := newKeyring(t, memstore.New(memstore.Options{}), masterKey(t))
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, vk := range []string{keyring.Verkey(pub), "", "not-base58-0OIl"} {
		if _, err := k.PrivateKey(ctx, vk); !errors.Is(err, keyring.ErrUnknownKey) {
			t.Errorf("PrivateKey(%q) error = %v, want ErrUnknownKey", vk, err)
		}
	}
}

func TestWrongMasterKey(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(memstore.Options{})
	k1 := newKeyring(t, store, masterKey(t))
	inv, err := k1.EnsureKey(ctx, record.PurposeInvitation)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := k1.NewKey(ctx, record.PurposeConnection)
	if err != nil {
		t.Fatal(err)
	}

	k2 := newKeyring(t, store, masterKey(t))
	if _, err := k2.EnsureKey(ctx, record.PurposeInvitation); !errors.Is(err, keyring.ErrWrongMasterKey) {
		t.Fatalf("EnsureKey with another master key: %v, want ErrWrongMasterKey", err)
	}
	if _, err := k2.PrivateKey(ctx, verkeyOf(conn)); !errors.Is(err, keyring.ErrWrongMasterKey) {
		t.Fatalf("PrivateKey with another master key: %v, want ErrWrongMasterKey", err)
	}
	if _, ok := k2.Cached(verkeyOf(inv)); ok {
		t.Fatal("a key that failed to open was cached")
	}
	keys, err := store.KeysByPurpose(ctx, record.PurposeInvitation)
	if err != nil || len(keys) != 1 {
		t.Fatalf("after a wrong-master EnsureKey the store has %d invitation keys (%v), want 1", len(keys), err)
	}
}

// mapStore is a keyring.Store whose records a test can rewrite.
type mapStore struct {
	mu   sync.Mutex
	keys map[string]record.Key
}

func (s *mapStore) WithKeyCreationLock(ctx context.Context, fn func(ctx context.Context) error) error {
	return fn(ctx)
}

func (s *mapStore) InsertKey(_ context.Context, k record.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]record.Key{}
	}
	s.keys[k.Verkey] = k
	return nil
}

func (s *mapStore) KeyByVerkey(_ context.Context, vk string) (record.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[vk]
	if !ok {
		return record.Key{}, record.ErrNotFound
	}
	return k, nil
}

func (s *mapStore) KeysByPurpose(_ context.Context, p record.KeyPurpose) ([]record.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []record.Key
	for _, k := range s.keys {
		if k.Purpose == p {
			out = append(out, k)
		}
	}
	return out, nil
}

func TestSealedValueBoundToVerkey(t *testing.T) {
	ctx := context.Background()
	store := &mapStore{}
	master := masterKey(t)
	k1 := newKeyring(t, store, master)
	a, err := k1.NewKey(ctx, record.PurposeConnection)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k1.NewKey(ctx, record.PurposeConnection)
	if err != nil {
		t.Fatal(err)
	}
	ra, _ := store.KeyByVerkey(ctx, verkeyOf(a))
	rb, _ := store.KeyByVerkey(ctx, verkeyOf(b))

	tests := []struct {
		name   string
		sealed []byte
		want   error // nil: any error
	}{
		{"sealed value of another key", rb.SealedPrivate, keyring.ErrWrongMasterKey},
		{"flipped bit", func() []byte { c := bytes.Clone(ra.SealedPrivate); c[len(c)-1] ^= 1; return c }(), keyring.ErrWrongMasterKey},
		{"too short", ra.SealedPrivate[:10], nil},
		{"empty", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := ra
			rec.SealedPrivate = tc.sealed
			_ = store.InsertKey(ctx, rec)
			k2 := newKeyring(t, store, master) // nothing cached
			priv, err := k2.PrivateKey(ctx, ra.Verkey)
			if err == nil {
				t.Fatalf("PrivateKey opened a tampered record (key %x…)", priv[:4])
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if errors.Is(err, keyring.ErrUnknownKey) {
				t.Fatalf("err = %v, a tampered key is not unknown", err)
			}
		})
	}
	// Put the original back: it opens again.
	_ = store.InsertKey(ctx, ra)
	got, err := newKeyring(t, store, master).PrivateKey(ctx, ra.Verkey)
	if err != nil || !got.Equal(a) {
		t.Fatalf("restored record: %v", err)
	}
}

func TestEnsureKeyConcurrent(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(memstore.Options{})
	master := masterKey(t)
	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  = map[string]int{}
		errs []error
	)
	shared := newKeyring(t, store, master)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := shared
			if i%2 == 1 { // half of them act as separate instances
				var err error
				k, err = keyring.New(store, master)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
			priv, err := k.EnsureKey(ctx, record.PurposeRouting)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			got[verkeyOf(priv)]++
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(got) != 1 {
		t.Fatalf("%d goroutines got %d distinct keys: %v", n, len(got), got)
	}
	keys, err := store.KeysByPurpose(ctx, record.PurposeRouting)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("%d routing keys stored, want exactly 1", len(keys))
	}
	for vk, count := range got {
		if vk != keys[0].Verkey || count != n {
			t.Fatalf("got %s×%d, stored %s", vk, count, keys[0].Verkey)
		}
	}
}

func TestVerkey(t *testing.T) {
	pub := ed25519.PublicKey(bytes.Repeat([]byte{0}, 32))
	if got, want := keyring.Verkey(pub), strings.Repeat("1", 32); got != want {
		t.Fatalf("Verkey(zero) = %q, want %q", got, want)
	}
	pub2, _, _ := ed25519.GenerateKey(rand.Reader)
	raw, err := base58.Decode(keyring.Verkey(pub2))
	if err != nil || !bytes.Equal(raw, pub2) {
		t.Fatalf("Verkey does not round-trip through base58: %v", err)
	}
}

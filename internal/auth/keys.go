package auth

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"cqrsflow/internal/config"
)

// Keys holds the accepted API keys as SHA-256 hashes with their
// principals. Keys themselves are never kept, logged or quoted in errors.
type Keys struct {
	entries []keyEntry
}

type keyEntry struct {
	hash  [sha256.Size]byte
	p     Principal
	where string // "API_KEYS item 2", "<file> line 3": for duplicate reports
}

// DefaultScopes are the scopes of a key that names none (`key`, `id:key`):
// what every key could do before keys had scopes.
const DefaultScopes = Read | Write

// Limits of the key syntax.
const (
	MinKeyLen = 16
	MaxKeyLen = 1024
)

var (
	validKeyID = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,64}$`)
	// validBoundUser is what a user id bound to a key may look like; a
	// token's sub is checked more loosely (see Verifier).
	validBoundUser = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,100}$`)
	// continuation is an API_KEYS item that is not a key but the rest of
	// the previous item's scope list (a scope name, possibly misspelled,
	// and maybe the user= field): API_KEYS is comma-separated and so are
	// scopes (`svc:KEY:read,write`). A key is at least 16 characters, so
	// it is never mistaken for one.
	continuation = regexp.MustCompile(`^[a-z]{1,15}(:user=.*)?$`)
)

// ParseKeys reads keys from API_KEYS (a comma list) and API_KEYS_FILE
// (one per line; blank lines and # comments ignored). Each is
//
//	key | id:key | id:key:scopes | id:key:scopes:user=U1|U2
//
// scopes being a comma list of read, write, admin (DefaultScopes when
// absent). A key bound to users acts only for them; admin cannot be bound.
// A key without id gets the principal "key-" + the first 8 hex digits of
// its SHA-256. Every problem is reported at once, naming the item or line,
// never the key.
func ParseKeys(list, file string) (*Keys, error) {
	k := &Keys{}
	var errs []error
	add := func(item, where string) {
		e, err := parseKey(item)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			return
		}
		e.where = where
		for _, o := range k.entries {
			if o.hash == e.hash {
				errs = append(errs, fmt.Errorf("%s: the same key as %s", where, o.where))
				return
			}
		}
		k.entries = append(k.entries, e)
	}
	items, err := splitKeyList(list)
	if err != nil {
		errs = append(errs, err)
	}
	for i, item := range items {
		add(item, fmt.Sprintf("API_KEYS item %d", i+1))
	}
	if file != "" {
		errs = append(errs, readKeyFile(file, add))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(k.entries) == 0 {
		return nil, errors.New("no API keys configured (API_KEYS or API_KEYS_FILE)")
	}
	return k, nil
}

// splitKeyList splits API_KEYS into items, joining scope continuations.
func splitKeyList(list string) ([]string, error) {
	var items []string
	for _, part := range config.SplitList(list) {
		if continuation.MatchString(part) {
			if len(items) == 0 {
				return nil, errors.New("API_KEYS: a scope list before any key")
			}
			items[len(items)-1] += "," + part
			continue
		}
		items = append(items, part)
	}
	return items, nil
}

func readKeyFile(file string, add func(item, where string)) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("API_KEYS_FILE: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		add(line, fmt.Sprintf("%s line %d", file, n))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	return nil
}

// parseKey parses one key item; its errors never quote a field, since any
// field may be (part of) a key written in the wrong place.
func parseKey(item string) (keyEntry, error) {
	fields := strings.Split(item, ":")
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	var id, key string
	scopes := DefaultScopes
	var users []string
	switch len(fields) {
	case 1:
		key = fields[0]
	case 2, 3, 4:
		id, key = fields[0], fields[1]
	default:
		return keyEntry{}, errors.New("too many ':'-separated fields (want key, id:key, id:key:scopes or id:key:scopes:user=U1|U2)")
	}
	if len(key) < MinKeyLen || len(key) > MaxKeyLen {
		return keyEntry{}, fmt.Errorf("an API key must be %d to %d characters", MinKeyLen, MaxKeyLen)
	}
	if len(fields) > 1 && !validKeyID.MatchString(id) {
		return keyEntry{}, errors.New("the id must be 1 to 64 characters of A-Z a-z 0-9 . _ @ + -")
	}
	if len(fields) > 2 {
		var err error
		if scopes, err = parseScopes(fields[2]); err != nil {
			return keyEntry{}, err
		}
	}
	if len(fields) > 3 {
		var err error
		if users, err = parseUsers(fields[3]); err != nil {
			return keyEntry{}, err
		}
		if scopes.Has(Admin) {
			return keyEntry{}, errors.New("an admin key acts for every user; it cannot also be bound with user=")
		}
	}
	h := sha256.Sum256([]byte(key))
	if id == "" {
		id = "key-" + hex.EncodeToString(h[:4])
	}
	return keyEntry{hash: h, p: Principal{ID: id, Scopes: scopes, Users: users}}, nil
}

func parseScopes(list string) (Scopes, error) {
	var s Scopes
	names := strings.Split(list, ",")
	for i, name := range names {
		sc, ok := ParseScope(strings.TrimSpace(name))
		if !ok {
			return 0, fmt.Errorf("scope %d of %d is not one of read, write, admin", i+1, len(names))
		}
		s |= sc
	}
	return s, nil
}

func parseUsers(field string) ([]string, error) {
	list, ok := strings.CutPrefix(field, "user=")
	if !ok {
		return nil, errors.New("the fourth field must be user=U1|U2")
	}
	var users []string
	for _, u := range strings.Split(list, "|") {
		u = strings.TrimSpace(u)
		if !validBoundUser.MatchString(u) {
			return nil, errors.New("each user= id must be 1 to 100 characters of A-Z a-z 0-9 . _ @ + -")
		}
		users = append(users, u)
	}
	return users, nil
}

// Describe lists the principals with their scopes and users (safe to
// log: no key material).
func (k *Keys) Describe() []string {
	out := make([]string, len(k.entries))
	for i, e := range k.entries {
		out[i] = e.p.String()
	}
	return out
}

// IDs lists the principals' ids.
func (k *Keys) IDs() []string {
	out := make([]string, len(k.entries))
	for i, e := range k.entries {
		out[i] = e.p.ID
	}
	return out
}

// Authenticate returns the principal of a presented key (shared: do not
// modify it). Every stored hash is compared in constant time, whatever
// matches.
func (k *Keys) Authenticate(presented string) (*Principal, bool) {
	h := sha256.Sum256([]byte(presented))
	var p *Principal
	for i := range k.entries {
		if subtle.ConstantTimeCompare(h[:], k.entries[i].hash[:]) == 1 {
			p = &k.entries[i].p
		}
	}
	return p, p != nil
}

package config

import (
	"fmt"
	"os"
	"syscall"
)

// CheckSecretFile refuses a file of secrets (API keys, passwords) that
// group or others can read or write: another local user could read the
// keys or add one of their own. env names the setting in the message.
func CheckSecretFile(env, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", env, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: %s is not a regular file", env, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: %s is accessible to group or others (mode %04o): refusing to read keys from it; fix with: chmod 600 %s", env, path, perm, path)
	}
	return nil
}

// CheckStateDir refuses a state directory that someone else could tamper
// with: owned by another user, or writable by group or others (a planted
// api-key file would be trusted).
func CheckStateDir(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("state dir %s is not a directory (CQRSFLOW_STATE_DIR)", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("state dir %s is owned by uid %d, not by this user (uid %d): refusing to use it; fix with: chown %d %s, or set CQRSFLOW_STATE_DIR to a directory of your own",
			dir, sys.Uid, os.Geteuid(), os.Geteuid(), dir)
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("state dir %s is writable by group or others (mode %04o): refusing to use it; fix with: chmod go-w %s", dir, perm, dir)
	}
	return nil
}

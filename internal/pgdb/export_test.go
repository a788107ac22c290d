package pgdb

import "io/fs"

// MigrateFS exposes migrate to the external tests, to feed it broken sets of
// migrations.
var MigrateFS = migrate

// Migrations is the embedded set of migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(embedded, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}

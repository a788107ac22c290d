package pgdb

// MigrateFS exposes migrate to the external tests, to feed it broken sets of
// migrations.
var MigrateFS = migrate

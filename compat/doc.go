// Package compat is the client compatibility suite: programs in
// clients/ (PHP mysqli and PDO, Perl DBD::MariaDB, Python MySQLdb, Ruby
// mysql2, JDBC) run the checks of testdata/checks.json against a leaf and
// against the master aggregator of a cluster; see README.md.
package compat

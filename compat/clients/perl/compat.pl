#!/usr/bin/perl
# Perl DBD::MariaDB client of the compatibility suite; prepared runs use
# server-side prepared statements (mariadb_server_prepare=1).
# Usage: perl compat.pl RUNS.json HOST PORT USER PASSWORD DB (see ../README.md)
use strict;
use warnings;
use DBI qw(:sql_types);
use JSON::PP;
use Encode qw(encode_utf8);

my ($path, $host, $port, $user, $password, $db) = @ARGV;
open(my $fh, '<:raw', $path) or die "$path: $!";
my $runs = JSON::PP->new->utf8->decode(do { local $/; <$fh> })->{runs};
my $json = JSON::PP->new->canonical;
$| = 1;

my %conns;
sub conn {
    my ($database) = @_;
    return $conns{$database} //= DBI->connect(
        "DBI:MariaDB:host=$host;port=$port" . ($database eq '' ? '' : ";database=$database"),
        $user, $password,
        { RaiseError => 1, PrintError => 0, AutoCommit => 1, mariadb_server_prepare => 1 });
}

# The value as bytes: text columns arrive decoded to characters,
# binary ones as bytes.
sub canon {
    my ($v) = @_;
    return undef unless defined $v;
    return utf8::is_utf8($v) ? encode_utf8($v) : "$v";
}

my %sqltype = (int => SQL_BIGINT, double => SQL_DOUBLE, bytes => SQL_VARBINARY, str => SQL_VARCHAR, null => SQL_VARCHAR);

sub err {
    return { code => ($DBI::err // 0) + 0, state => $DBI::state // '', msg => $DBI::errstr // "$@" };
}

for my $run (@$runs) {
    my $dbh = conn($run->{nodb} ? '' : $db);
    my $si = 0;
    for my $step (@{ $run->{steps} }) {
        if ($step->{tx}) {
            my %o = (run => $run->{id}, step => $si, exec => 0);
            eval {
                if ($step->{tx} eq 'begin') { $dbh->begin_work }
                elsif ($step->{tx} eq 'commit') { $dbh->commit }
                else { $dbh->rollback }
                1;
            } or $o{error} = err();
            print $json->encode(\%o), "\n";
            $si++;
            next;
        }
        my $sth;
        my $ei = 0;
        for my $ex (@{ $step->{execs} }) {
            my %o = (run => $run->{id}, step => $si, exec => $ei);
            eval {
                # one prepared statement for all of the step's executions
                $sth = $dbh->prepare($ex->{sql}, { mariadb_server_prepare => $run->{prep} ? 1 : 0 })
                    if !$sth || !$run->{prep};
                my $i = 1;
                for my $p (@{ $ex->{params} }) {
                    my $v = $p->{t} eq 'null' ? undef : $p->{t} eq 'bytes' ? pack('H*', $p->{v}) : $p->{v};
                    $sth->bind_param($i++, $v, $sqltype{ $p->{t} });
                }
                my $n = $sth->execute;
                if ($sth->{NUM_OF_FIELDS}) {
                    $o{cols} = [ map { encode_utf8($_) } @{ $sth->{NAME} } ];
                    my @rows;
                    while (my $r = $sth->fetchrow_arrayref) {
                        push @rows, [ map { my $c = canon($_); defined $c ? unpack('H*', $c) : undef } @$r ];
                    }
                    $o{rows} = \@rows;
                } else {
                    $o{affected} = $n + 0;
                    $o{insert_id} = ($dbh->{mariadb_insertid} // 0) + 0;
                }
                1;
            } or $o{error} = err();
            print $json->encode(\%o), "\n";
            $ei++;
        }
        $si++;
    }
}

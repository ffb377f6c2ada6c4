package storage

import (
	"errors"
	"testing"
)

// TestOutcomePastDeposedPart: a leaf holds an in-doubt transaction that
// wrote two of its master partitions, x and y. x fails over (its replica
// elsewhere is promoted and loads x's part from the replicated prepare
// record): the copy here is deposed. The coordinator's decision must
// still apply y's part here; x's part is its new master's to apply.
// Refusing the whole outcome because of x left y's part in doubt, its
// locks held, while x's part committed on the new master: a transfer's
// credit without its debit (nemesis seed 400422077).
func TestOutcomePastDeposedPart(t *testing.T) {
	for _, outcome := range []string{"commit", "rollback"} {
		t.Run(outcome, func(t *testing.T) {
			te := newTestEngine(t, "")
			s := te.store
			ctx := te.session()
			ctx.SetCurrentDatabase("")
			for _, q := range []string{"CREATE DATABASE x", "CREATE DATABASE y",
				"CREATE TABLE x.t (id INT PRIMARY KEY, v INT)", "CREATE TABLE y.t (id INT PRIMARY KEY, v INT)",
				"INSERT INTO x.t VALUES (1, 0)", "INSERT INTO y.t VALUES (1, 0)"} {
				te.must(ctx, q)
			}
			tx := te.session()
			te.must(tx, "BEGIN")
			te.must(tx, "UPDATE x.t SET v = v + 1")
			te.must(tx, "UPDATE y.t SET v = v + 1")
			if _, err := tx.Session.(*Session).PrepareSession(tx, "c/1"); err != nil {
				t.Fatal(err)
			}
			pos, _ := s.Position("x")
			var err error
			if !s.Depose("x", pos.Term+1) {
				t.Fatal("x was not deposed")
			}
			if outcome == "commit" {
				err = s.CommitPrepared("c/1")
			} else {
				err = s.RollbackPrepared("c/1")
			}
			if err != nil {
				t.Fatalf("%s with a deposed part: %v", outcome, err)
			}
			if s.IsPrepared("c/1") {
				t.Fatal("still in doubt")
			}
			want := "1,1"
			if outcome == "rollback" {
				want = "1,0"
			}
			te.expect(ctx, "SELECT id, v FROM y.t", want)
			// y's row is free again
			te.must(ctx, "UPDATE y.t SET v = v + 10")
			// x's part is not applied here: its new master applies it
			if got, _ := s.Position("x"); got != pos {
				t.Errorf("the deposed copy x moved from %s to %s", pos, got)
			}
		})
	}
}

// TestRetriedCommitWaitsForReplicas: a COMMIT PREPARED whose replica did
// not confirm fails; its retry must not answer OK until the replica has
// the outcome (answered at once, the coordinator forgot its decision and
// a replica promoted without the outcome rolled its part back).
func TestRetriedCommitWaitsForReplicas(t *testing.T) {
	te := newTestEngine(t, "")
	s := te.store
	ctx := te.session()
	ctx.SetCurrentDatabase("")
	for _, q := range []string{"CREATE DATABASE x", "CREATE TABLE x.t (id INT PRIMARY KEY, v INT)", "INSERT INTO x.t VALUES (1, 0)"} {
		te.must(ctx, q)
	}
	confirmed := false
	s.SetReplicaWaiter(func(db string, lsn uint64) error {
		if !confirmed {
			return errors.New("replica did not confirm")
		}
		return nil
	})
	tx := te.session()
	te.must(tx, "BEGIN")
	te.must(tx, "UPDATE x.t SET v = 1")
	confirmed = true // the prepare record reaches the replica
	if _, err := tx.Session.(*Session).PrepareSession(tx, "c/2"); err != nil {
		t.Fatal(err)
	}
	confirmed = false
	if err := s.CommitPrepared("c/2"); err == nil {
		t.Fatal("a commit its replica did not confirm was acknowledged")
	}
	if err := s.CommitPrepared("c/2"); err == nil {
		t.Fatal("its retry was acknowledged while the replica still had not confirmed")
	}
	confirmed = true
	if err := s.CommitPrepared("c/2"); err != nil {
		t.Fatalf("the retry once the replica confirmed: %v", err)
	}
	if err := s.CommitPrepared("never-here"); err != nil {
		t.Fatalf("an unknown xid: %v", err)
	}
	te.expect(ctx, "SELECT v FROM x.t", "1")
}

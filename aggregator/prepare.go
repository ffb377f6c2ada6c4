package aggregator

// PrepareOnDefinitions runs prepare (the engine's COM_STMT_PREPARE) with
// the connection seeing this node's copies of its distributed databases:
// the definitions of their sharded tables, which the engine can check a
// REPLACE or an INSERT … ON DUPLICATE KEY UPDATE against (a DistTable
// takes inserts only: the aggregator routes those statements itself).
// The engine keeps only the parsed statement of a prepare, so executions
// still see the distributed tables.
func (a *Aggregator) PrepareOnDefinitions(connID uint32, prepare func() error) error {
	s := a.session(connID)
	s.local.Store(true)
	defer s.local.Store(false)
	return prepare()
}

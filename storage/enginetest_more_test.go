package storage_test

import (
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"github.com/dolthub/go-mysql-server/enginetest"
)

func TestEngineQueriesPrepared(t *testing.T) { enginetest.TestQueriesPrepared(t, newHarness(t)) }
func TestEngineInsertPrepared(t *testing.T)  { enginetest.TestInsertQueriesPrepared(t, newHarness(t)) }
func TestEngineUpdatePrepared(t *testing.T)  { enginetest.TestUpdateQueriesPrepared(t, newHarness(t)) }
func TestEngineDeletePrepared(t *testing.T)  { enginetest.TestDeleteQueriesPrepared(t, newHarness(t)) }
func TestEngineReplacePrepared(t *testing.T) { enginetest.TestReplaceQueriesPrepared(t, newHarness(t)) }
func TestEngineScriptsPrepared(t *testing.T) { enginetest.TestScriptsPrepared(t, newHarness(t)) }
func TestEnginePreparedStmts(t *testing.T)   { enginetest.TestPreparedStatements(t, newHarness(t)) }
func TestEnginePreparedInsert(t *testing.T)  { enginetest.TestPreparedInsert(t, newHarness(t)) }
func TestEnginePrepared(t *testing.T)        { enginetest.TestPrepared(t, newHarness(t)) }
func TestEngineCreateFKs(t *testing.T)       { enginetest.TestCreateForeignKeys(t, newHarness(t)) }
func TestEngineDropFKs(t *testing.T)         { enginetest.TestDropForeignKeys(t, newHarness(t)) }
func TestEngineForeignKeys(t *testing.T)     { enginetest.TestForeignKeys(t, newHarness(t)) }
func TestEngineCreateChecks(t *testing.T)    { enginetest.TestCreateCheckConstraints(t, newHarness(t)) }
func TestEngineChecksOnInsert(t *testing.T)  { enginetest.TestChecksOnInsert(t, newHarness(t)) }
func TestEngineChecksOnUpdate(t *testing.T)  { enginetest.TestChecksOnUpdate(t, newHarness(t)) }
func TestEngineDisallowedChecks(t *testing.T) {
	enginetest.TestDisallowedCheckConstraints(t, newHarness(t))
}
func TestEngineDropChecks(t *testing.T)     { enginetest.TestDropCheckConstraints(t, newHarness(t)) }
func TestEngineAlterTable(t *testing.T)     { enginetest.TestAlterTable(t, newHarness(t)) }
func TestEngineColumnDefaults(t *testing.T) { enginetest.TestColumnDefaults(t, newHarness(t)) }
func TestEngineConcurrentTxns(t *testing.T) { enginetest.TestConcurrentTransactions(t, newHarness(t)) }

// The LOAD DATA suites read their files relative to GMS's enginetest
// package.
func TestEngineLoadData(t *testing.T) {
	t.Chdir(enginetestDir(t))
	enginetest.TestLoadData(t, newHarness(t))
}

func TestEngineLoadDataErrors(t *testing.T) {
	t.Chdir(enginetestDir(t))
	enginetest.TestLoadDataErrors(t, newHarness(t))
}

// enginetestDir is the directory of GMS's enginetest package.
func enginetestDir(t *testing.T) string {
	file, _ := runtime.FuncForPC(reflect.ValueOf(enginetest.TestLoadData).Pointer()).FileLine(reflect.ValueOf(enginetest.TestLoadData).Pointer())
	if file == "" {
		t.Fatal("no source file for GMS's enginetest package")
	}
	return filepath.Dir(file)
}

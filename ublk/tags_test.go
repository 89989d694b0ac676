package ublk

import "testing"

func TestTagTable(t *testing.T) {
	tt := newTagTable(3)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for tag := range 3 {
		must(tt.fetch(tag))
	}
	if err := tt.fetch(0); err == nil {
		t.Fatal("second FETCH of tag 0 accepted")
	}
	if err := tt.commit(1); err == nil {
		t.Fatal("commit of a fetching tag accepted")
	}
	serve, err := tt.arrived(0, UBLK_IO_RES_OK)
	must(err)
	if !serve || tt.inService() != 1 {
		t.Fatalf("after a request: serve %v, in service %d", serve, tt.inService())
	}
	if _, err := tt.arrived(0, UBLK_IO_RES_OK); err == nil {
		t.Fatal("a second request for a serving tag accepted")
	}
	must(tt.commit(0))
	if tt.inService() != 0 {
		t.Fatalf("in service %d after commit", tt.inService())
	}
	for tag := range 3 {
		serve, err := tt.arrived(tag, UBLK_IO_RES_ABORT)
		must(err)
		if serve {
			t.Fatalf("tag %d: abort served", tag)
		}
	}
	if !tt.allDead() {
		t.Fatal("not all dead after three aborts")
	}
	if _, err := tt.arrived(5, 0); err == nil {
		t.Fatal("tag out of range accepted")
	}
	if _, err := tt.arrived(-1, 0); err == nil {
		t.Fatal("negative tag accepted")
	}
}

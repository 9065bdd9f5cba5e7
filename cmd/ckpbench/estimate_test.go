package main

import (
	"strings"
	"testing"
	"time"
)

// defaultOptions returns the options of a run without flags.
func defaultOptions(t *testing.T) *options {
	t.Helper()
	o := &options{sections: defaultSectionsFlag(), sync: "none,always", rounds: 2, keep: 2, reopenVersions: 1,
		manyRegions: 1, diffSaves: 1, remoteEvery: 1, budget: defaultBudget}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	return o
}

func defaultSectionsFlag() string { return strings.Join(defaultSections, ",") }

// TestMachineScale: the probes scale the reference times, each within 0.5x..8x; a
// failed fresh-page probe leaves memory speed alone.
func TestMachineScale(t *testing.T) {
	for _, tc := range []struct {
		mem, fresh time.Duration
		want       float64
	}{
		{referenceCopyHash, referenceFresh, 1},
		{referenceCopyHash, 3 * referenceFresh, 2},      // slow fresh pages: half the weight
		{2 * referenceCopyHash, 0, 2},                   // no fresh probe
		{referenceCopyHash / 100, referenceFresh, 0.75}, // clamped at 0.5
		{referenceCopyHash, 100 * referenceFresh, 4.5},  // clamped at 8
	} {
		if got := machineScale(tc.mem, tc.fresh); got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("machineScale(%v, %v) = %v, want %v", tc.mem, tc.fresh, got, tc.want)
		}
	}
}

// TestPacer: before any step the estimate is the reference time at the probes'
// scale; once steps finish, it follows the time they took here; the budget check
// says whether the rest would end the run past it, and dropping rounds fixes that.
func TestPacer(t *testing.T) {
	o := defaultOptions(t)
	if o.budget != defaultBudget {
		t.Fatalf("the default run's budget is %v, want %v", o.budget, defaultBudget)
	}
	steps := map[string]int{"save": 10, "reopen": 1}
	p := newPacer(o, steps, 2)
	ref := sectionWeight(o, "save") + sectionWeight(o, "reopen")
	if got, want := p.left(), time.Duration(2*ref*float64(time.Second)); got != want {
		t.Fatalf("left before any step: %v, want %v", got, want)
	}
	// Half the save steps done, and they took 3x their reference time.
	half := sectionWeight(o, "save") / 2
	for i := 0; i < 5; i++ {
		p.step("save", 1)
	}
	p.start = time.Now().Add(-time.Duration(3 * half * float64(time.Second)))
	left := p.left().Seconds()
	if want := 3 * (ref - half); left < want*0.99 || left > want*1.01 {
		t.Fatalf("left after half the saves at 3x: %.2fs, want %.2fs", left, want)
	}
	// The run would take 3x its reference time in all.
	for _, b := range []time.Duration{time.Duration(2.5 * ref * float64(time.Second)), time.Duration(3.5 * ref * float64(time.Second))} {
		p.budget = b
		if got, want := p.overBudget(0), 3*ref > b.Seconds(); got != want {
			t.Fatalf("overBudget(0) = %v with %.1fs projected and a budget of %v", got, 3*ref, b)
		}
	}
	p.budget = time.Duration(3.5 * ref * float64(time.Second))
	if !p.overBudget(ref) { // another reference run's worth of work would not fit
		t.Fatal("overBudget(ref) = false")
	}
	// Dropping the remaining saves leaves the reopen.
	for i := 0; i < 5; i++ {
		p.drop("save", 1)
	}
	if want := 3 * sectionWeight(o, "reopen"); p.left().Seconds() > want*1.01 || p.left().Seconds() < want*0.99 {
		t.Fatalf("left after dropping the saves: %v, want %.2fs", p.left(), want)
	}
	p.budget = 0
	if p.overBudget(1e9) || p.fit() != 1 {
		t.Fatal("no budget, yet over it")
	}
}

// TestPacerFit: when the rest does not fit in the budget, fit says which share of it
// does, and shrinking the plan by that share makes it fit.
func TestPacerFit(t *testing.T) {
	o := defaultOptions(t)
	p := newPacer(o, map[string]int{"save": 10}, 1)
	w := sectionWeight(o, "save")
	p.budget = time.Duration(w / 4 * float64(time.Second)) // a quarter of the planned time
	f := p.fit()
	if f < 0.24 || f > 0.26 {
		t.Fatalf("fit = %.3f, want 0.25", f)
	}
	p.shrink("save", 10*(1-0.95*f)) // a little more than needed: time passes meanwhile
	if p.fit() < 0.98 || p.overBudget(0) {
		t.Fatalf("after shrinking: fit %.3f, over budget %v", p.fit(), p.overBudget(0))
	}
	p.budget = time.Nanosecond
	if p.fit() != 0.1 {
		t.Fatalf("fit with no time left = %v, want the floor 0.1", p.fit())
	}
}

// TestBudgetDefault: -budget applies to the default sections unless given; other
// runs have none unless asked for.
func TestBudgetDefault(t *testing.T) {
	o := &options{sections: "save,reopen", sync: "none", rounds: 2, keep: 2, reopenVersions: 1, manyRegions: 1,
		diffSaves: 1, remoteEvery: 1, budget: defaultBudget}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	if o.budget != 0 {
		t.Fatalf("-run save,reopen has a budget of %v, want none", o.budget)
	}
	o = &options{sections: "save,reopen", sync: "none", rounds: 2, keep: 2, reopenVersions: 1, manyRegions: 1,
		diffSaves: 1, remoteEvery: 1, budget: time.Minute, budgetGiven: true}
	if err := o.check(); err != nil || o.budget != time.Minute {
		t.Fatalf("-run save,reopen -budget 1m: %v, %v", o.budget, err)
	}
	o = &options{sections: defaultSectionsFlag(), sync: "none", rounds: 2, keep: 2, reopenVersions: 1, manyRegions: 1,
		diffSaves: 1, remoteEvery: 1, budget: 0, budgetGiven: true}
	if err := o.check(); err != nil || o.budget != 0 {
		t.Fatalf("-budget 0: %v, %v", o.budget, err)
	}
}

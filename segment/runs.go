package segment

import "sort"

// run says that a volume's chained records with lsn in [first, last] are in
// segment seg. A volume's runs are sorted by lsn and do not overlap; streams
// use them to find a volume's records without scanning the log. There is
// about one run per segment a volume has written to, so they stay small.
type run struct {
	first, last uint64
	seg         uint32
}

type runs []run

// find returns the index of the run containing lsn, or -1.
func (r runs) find(lsn uint64) int {
	i := sort.Search(len(r), func(i int) bool { return r[i].last >= lsn })
	if i < len(r) && r[i].first <= lsn {
		return i
	}
	return -1
}

// add records that the records first..last are in seg, replacing whatever
// the runs said about those lsns (the cleaner moves records).
func (r *runs) add(first, last uint64, seg uint32) {
	// The common case, an append after the last run, without the general
	// path's rebuild.
	if n := len(*r); n == 0 || (*r)[n-1].last < first {
		if n > 0 && (*r)[n-1].seg == seg && (*r)[n-1].last+1 == first {
			(*r)[n-1].last = last
		} else {
			*r = append(*r, run{first: first, last: last, seg: seg})
		}
		return
	}
	r.remove(first, last)
	rs := *r
	i := sort.Search(len(rs), func(i int) bool { return rs[i].first > last })
	// merge with the left neighbour when it ends just before and is in seg
	if i > 0 && rs[i-1].seg == seg && rs[i-1].last+1 == first {
		rs[i-1].last = last
		if i < len(rs) && rs[i].seg == seg && rs[i].first == last+1 {
			rs[i-1].last = rs[i].last
			rs = append(rs[:i], rs[i+1:]...)
		}
		*r = rs
		return
	}
	if i < len(rs) && rs[i].seg == seg && rs[i].first == last+1 {
		rs[i].first = first
		return
	}
	rs = append(rs, run{})
	copy(rs[i+1:], rs[i:])
	rs[i] = run{first: first, last: last, seg: seg}
	*r = rs
}

// overlaps reports whether any of the lsns first..last is in a run.
func (r runs) overlaps(first, last uint64) bool {
	i := sort.Search(len(r), func(i int) bool { return r[i].last >= first })
	return i < len(r) && r[i].first <= last
}

// remove forgets lsns first..last, splitting runs as needed.
func (r *runs) remove(first, last uint64) {
	var out runs
	for _, x := range *r {
		if x.last < first || x.first > last {
			out = append(out, x)
			continue
		}
		if x.first < first {
			out = append(out, run{first: x.first, last: first - 1, seg: x.seg})
		}
		if x.last > last {
			out = append(out, run{first: last + 1, last: x.last, seg: x.seg})
		}
	}
	*r = out
}

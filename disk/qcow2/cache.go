package qcow2

import (
	"cmp"
	"slices"
)

// tableCache caches cluster-sized metadata tables (L2 tables or refcount
// blocks) by host offset, with LRU replacement. It does no I/O and no
// locking: the image holds its metadata lock around every use, and decides
// how to write back dirty entries before evicting them.
type tableCache struct {
	max  int
	m    map[int64]*cacheEntry
	head cacheEntry // sentinel: head.next is most recently used
	// dirty counts dirty entries.
	dirty int
}

// cacheEntry is one cached table.
type cacheEntry struct {
	off        int64
	data       []byte
	dirty      bool
	pin        int // >0: must not be evicted
	prev, next *cacheEntry
}

func newTableCache(max int) *tableCache {
	if max < 4 {
		max = 4
	}
	c := &tableCache{max: max, m: make(map[int64]*cacheEntry)}
	c.head.next = &c.head
	c.head.prev = &c.head
	return c
}

// get returns the entry at off, or nil, and marks it recently used.
func (c *tableCache) get(off int64) *cacheEntry {
	e := c.m[off]
	if e != nil && c.head.next != e {
		c.unlink(e)
		c.pushFront(e)
	}
	return e
}

// insert adds a table, replacing any entry at off.
func (c *tableCache) insert(off int64, data []byte) *cacheEntry {
	if old := c.m[off]; old != nil {
		c.remove(old)
	}
	e := &cacheEntry{off: off, data: data}
	c.m[off] = e
	c.pushFront(e)
	return e
}

// setDirty marks e dirty.
func (c *tableCache) setDirty(e *cacheEntry) {
	if !e.dirty {
		e.dirty = true
		c.dirty++
	}
}

// setClean marks e clean.
func (c *tableCache) setClean(e *cacheEntry) {
	if e.dirty {
		e.dirty = false
		c.dirty--
	}
}

// remove drops e from the cache, dirty or not.
func (c *tableCache) remove(e *cacheEntry) {
	c.setClean(e)
	c.unlink(e)
	delete(c.m, e.off)
}

// over reports whether the cache holds more than its capacity.
func (c *tableCache) over() bool { return len(c.m) > c.max }

// victim returns the least recently used clean, unpinned entry, or nil.
func (c *tableCache) victim() *cacheEntry {
	for e := c.head.prev; e != &c.head; e = e.prev {
		if !e.dirty && e.pin == 0 {
			return e
		}
	}
	return nil
}

// dirtyEntries returns the dirty entries in ascending offset order.
func (c *tableCache) dirtyEntries() []*cacheEntry {
	if c.dirty == 0 {
		return nil
	}
	out := make([]*cacheEntry, 0, c.dirty)
	for e := c.head.next; e != &c.head; e = e.next {
		if e.dirty {
			out = append(out, e)
		}
	}
	sortEntries(out)
	return out
}

// clear drops every entry.
func (c *tableCache) clear() {
	c.m = make(map[int64]*cacheEntry)
	c.head.next = &c.head
	c.head.prev = &c.head
	c.dirty = 0
}

func (c *tableCache) unlink(e *cacheEntry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (c *tableCache) pushFront(e *cacheEntry) {
	e.next = c.head.next
	e.prev = &c.head
	c.head.next.prev = e
	c.head.next = e
}

// sortEntries sorts by host offset, so write-back is sequential.
func sortEntries(es []*cacheEntry) {
	slices.SortFunc(es, func(a, b *cacheEntry) int { return cmp.Compare(a.off, b.off) })
}

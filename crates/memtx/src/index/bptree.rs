//! A B+ tree ordered by a comparator supplied per call.
//!
//! `std::collections::BTreeMap` needs an `Ord` key, but index order depends on a runtime key
//! definition, so this tree takes the ordering as a closure at every operation instead. Nodes
//! live in one arena `Vec` and refer to each other by `u32` ids; leaves are doubly linked so
//! that iteration in either direction is a walk along the leaf chain. Leaves store the
//! elements themselves (a `Tuple` is two words), so memory per entry is close to one
//! element plus the unused slack of half-full leaves.
//!
//! Invariant (strict separators): for an inner node, every element of `children[i]` is less
//! than `seps[i]`, and `seps[i]` is less than or equal to every element of `children[i + 1]`.
//! Elements are distinct under the comparator the caller uses for insert and remove.
//! Searches may use any predicate that is monotone in that order (a key prefix, for example).

use std::cmp::Ordering;

/// Elements per leaf before it splits. A leaf's vector also holds the one transient extra
/// element of an overflow: 63 + 1 16-byte entries fill a 1 KiB allocation exactly.
const LEAF_MAX: usize = 63;
/// A non-root leaf other than the last never has fewer elements than this.
const LEAF_MIN: usize = LEAF_MAX / 2;
/// Room a split of the last leaf leaves in its left part for late, out-of-order keys.
const LAST_LEAF_SPARE: usize = 8;
/// Children per inner node before it splits.
const INNER_MAX: usize = 64;
/// A non-root inner node never has fewer children than this.
const INNER_MIN: usize = INNER_MAX / 2;
/// Inner levels a tree can have: `INNER_MIN^16` far exceeds any addressable element count.
const HEIGHT_MAX: usize = 16;
/// "No node" in leaf links.
const NONE: u32 = u32::MAX;

/// A position: an element of a leaf, or the end when `idx` equals the last leaf's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    leaf: u32,
    idx: usize,
}

enum Node<T> {
    Leaf(Leaf<T>),
    Inner(Inner<T>),
    Free,
}

struct Leaf<T> {
    items: Vec<T>,
    prev: u32,
    next: u32,
}

struct Inner<T> {
    seps: Vec<T>,
    children: Vec<u32>,
}

/// The inner nodes visited from the root down, with the child index taken at each.
struct Path {
    steps: [(u32, usize); HEIGHT_MAX],
    len: usize,
}

impl Path {
    fn new() -> Path {
        Path {
            steps: [(NONE, 0); HEIGHT_MAX],
            len: 0,
        }
    }

    fn push(&mut self, node: u32, child: usize) {
        let slot = self
            .steps
            .get_mut(self.len)
            .expect("invariant: tree height within HEIGHT_MAX");
        *slot = (node, child);
        self.len += 1;
    }

    fn get(&self, level: usize) -> (u32, usize) {
        *self
            .steps
            .get(level)
            .expect("invariant: path level recorded")
    }
}

pub struct BPlusTree<T> {
    nodes: Vec<Node<T>>,
    free: Vec<u32>,
    root: u32,
    /// Inner levels above the leaves (0: the root is a leaf).
    height: usize,
    len: usize,
    first: u32,
    last: u32,
}

impl<T: Clone> Default for BPlusTree<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> BPlusTree<T> {
    pub fn new() -> BPlusTree<T> {
        let root = Node::Leaf(Leaf {
            items: new_leaf_vec(),
            prev: NONE,
            next: NONE,
        });
        BPlusTree {
            nodes: vec![root],
            free: Vec::new(),
            root: 0,
            height: 0,
            len: 0,
            first: 0,
            last: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held by the nodes (allocated capacity, not just occupied slots).
    pub fn mem_size(&self) -> usize {
        let elem = std::mem::size_of::<T>();
        let per_node: usize = self
            .nodes
            .iter()
            .map(|n| match n {
                Node::Leaf(l) => l.items.capacity() * elem,
                Node::Inner(i) => i.seps.capacity() * elem + i.children.capacity() * 4,
                Node::Free => 0,
            })
            .sum();
        per_node + self.nodes.capacity() * std::mem::size_of::<Node<T>>() + self.free.capacity() * 4
    }

    // ---- positions ----

    pub fn begin(&self) -> Pos {
        Pos {
            leaf: self.first,
            idx: 0,
        }
    }

    pub fn end(&self) -> Pos {
        Pos {
            leaf: self.last,
            idx: self.leaf(self.last).items.len(),
        }
    }

    pub fn get(&self, pos: Pos) -> Option<&T> {
        match self.nodes.get(pos.leaf as usize) {
            Some(Node::Leaf(leaf)) => leaf.items.get(pos.idx),
            _ => None,
        }
    }

    /// The position after `pos` (the end stays the end).
    pub fn next(&self, pos: Pos) -> Pos {
        let leaf = self.leaf(pos.leaf);
        if pos.idx < leaf.items.len() {
            self.normalize(Pos {
                leaf: pos.leaf,
                idx: pos.idx + 1,
            })
        } else {
            pos
        }
    }

    /// The position before `pos`, or `None` at the beginning.
    pub fn prev(&self, pos: Pos) -> Option<Pos> {
        if pos.idx > 0 {
            return Some(Pos {
                leaf: pos.leaf,
                idx: pos.idx - 1,
            });
        }
        let prev = self.leaf(pos.leaf).prev;
        if prev == NONE {
            return None;
        }
        let len = self.leaf(prev).items.len();
        (len > 0).then(|| Pos {
            leaf: prev,
            idx: len - 1,
        })
    }

    /// Past-the-end of a leaf that has a successor is the successor's first element, so
    /// every position has one representation and `end()` is unique.
    fn normalize(&self, pos: Pos) -> Pos {
        let leaf = self.leaf(pos.leaf);
        if pos.idx >= leaf.items.len() && leaf.next != NONE {
            Pos {
                leaf: leaf.next,
                idx: 0,
            }
        } else {
            pos
        }
    }

    /// The first position whose element does not satisfy `before` (which must hold for a
    /// prefix of the order): `before = |x| x < k` gives the lower bound of `k`,
    /// `|x| x <= k` the upper bound.
    pub fn partition_point(&self, mut before: impl FnMut(&T) -> bool) -> Pos {
        let leaf_id = self.descend(&mut before, None);
        let items = &self.leaf(leaf_id).items;
        prefetch(items);
        let idx = items.partition_point(&mut before);
        self.normalize(Pos { leaf: leaf_id, idx })
    }

    /// The element equal to the target of `cmp` (which orders an element against it).
    pub fn find(&self, mut cmp: impl FnMut(&T) -> Ordering) -> Option<&T> {
        let mut right = |x: &T| cmp(x) != Ordering::Greater;
        let leaf_id = self.descend(&mut right, None);
        let items = &self.leaf(leaf_id).items;
        let idx = items.partition_point(|x| cmp(x) == Ordering::Less);
        items.get(idx).filter(|x| cmp(x) == Ordering::Equal)
    }

    /// `partition_point` for many predicates at once, walking the tree level by level: every
    /// search takes one level before any goes deeper, and each level's nodes are prefetched
    /// for all of them first, so the cache misses of different searches overlap instead of
    /// following one another. `found` sees the element at each result, if the leaf has one
    /// (to prefetch what it points to).
    pub fn partition_points<F: FnMut(&T) -> bool>(
        &self,
        searches: &mut [F],
        mut found: impl FnMut(&T),
    ) -> Vec<Pos> {
        let mut ids = vec![self.root; searches.len()];
        for _ in 0..self.height {
            for &id in &ids {
                self.prefetch_contents(id);
            }
            for (id, before) in ids.iter_mut().zip(searches.iter_mut()) {
                let inner = self.inner(*id);
                let child = inner.seps.partition_point(&mut *before);
                *id = *inner
                    .children
                    .get(child)
                    .expect("invariant: children = seps + 1");
                if let Some(node) = self.nodes.get(*id as usize) {
                    crate::prefetch::line((node as *const Node<T>).cast());
                }
            }
        }
        for &id in &ids {
            self.prefetch_contents(id);
        }
        ids.iter()
            .zip(searches.iter_mut())
            .map(|(&leaf_id, before)| {
                let items = &self.leaf(leaf_id).items;
                let idx = items.partition_point(&mut *before);
                if let Some(item) = items.get(idx) {
                    found(item);
                }
                self.normalize(Pos { leaf: leaf_id, idx })
            })
            .collect()
    }

    /// Prefetches the elements (and child ids) of a node whose arena slot is in cache.
    fn prefetch_contents(&self, id: u32) {
        match self.nodes.get(id as usize) {
            Some(Node::Inner(inner)) => {
                prefetch(&inner.seps);
                prefetch(&inner.children);
            }
            Some(Node::Leaf(leaf)) => prefetch(&leaf.items),
            Some(Node::Free) | None => {}
        }
    }

    /// Walks from the root to a leaf, taking at each inner node the child after the last
    /// separator for which `right` holds.
    fn descend(&self, right: &mut impl FnMut(&T) -> bool, mut path: Option<&mut Path>) -> u32 {
        let mut id = self.root;
        loop {
            match self.node(id) {
                Node::Inner(inner) => {
                    prefetch(&inner.seps);
                    let child = inner.seps.partition_point(&mut *right);
                    if let Some(path) = path.as_deref_mut() {
                        path.push(id, child);
                    }
                    id = *inner
                        .children
                        .get(child)
                        .expect("invariant: children = seps + 1");
                }
                Node::Leaf(_) => return id,
                Node::Free => unreachable!("invariant: reachable nodes are live"),
            }
        }
    }

    // ---- insert ----

    /// Inserts `value`, or replaces and returns the element equal to it. `cmp(x, value)`
    /// orders an element against `value` and must be the tree's order.
    pub fn insert(&mut self, mut value: T, mut cmp: impl FnMut(&T, &T) -> Ordering) -> Option<T> {
        match self.insert_at_end(value, &mut cmp) {
            Ok(replaced) => return replaced,
            Err(v) => value = v,
        }
        let mut path = Path::new();
        let mut right = |x: &T| cmp(x, &value) != Ordering::Greater;
        let leaf_id = self.descend(&mut right, Some(&mut path));
        let leaf = self.leaf_mut(leaf_id);
        let (idx, equal) = slot_in(&leaf.items, &value, &mut cmp);
        if let Some(slot) = leaf.items.get_mut(idx).filter(|_| equal) {
            return Some(std::mem::replace(slot, value));
        }
        leaf.items.insert(idx, value);
        self.len += 1;
        if self.leaf(leaf_id).items.len() > LEAF_MAX && !self.shift_to_sibling(&path, leaf_id) {
            // Nearly ascending keys (concurrent inserters of an increasing id) land at the
            // end: keep the left leaf nearly full, as a plain append does.
            let keep = if leaf_id == self.last {
                LEAF_MAX - LAST_LEAF_SPARE
            } else {
                LEAF_MAX.div_ceil(2)
            };
            let (sep, right_id) = self.split_leaf(leaf_id, keep);
            self.insert_separator(&path, path.len, sep, right_id);
        }
        None
    }

    /// The fast path for keys that arrive (nearly) in ascending order — an auto-increment id,
    /// concurrent inserters of one, a log replay: a value past the first element of the last
    /// leaf belongs to that leaf, so it goes there without a descent unless the leaf must
    /// split. Gives the value back when the general path has to take it.
    fn insert_at_end(
        &mut self,
        value: T,
        cmp: &mut impl FnMut(&T, &T) -> Ordering,
    ) -> Result<Option<T>, T> {
        let last = self.leaf(self.last);
        let (Some(first), Some(tail)) = (last.items.first(), last.items.last()) else {
            return Err(value);
        };
        if cmp(tail, &value) == Ordering::Less {
            self.append(value);
            return Ok(None);
        }
        if self.height == 0 || cmp(first, &value) != Ordering::Less {
            return Err(value);
        }
        let (idx, equal) = slot_in(&last.items, &value, cmp);
        let full = last.items.len() >= LEAF_MAX;
        let leaf = self.leaf_mut(self.last);
        if let Some(slot) = leaf.items.get_mut(idx).filter(|_| equal) {
            return Ok(Some(std::mem::replace(slot, value)));
        }
        if full {
            return Err(value);
        }
        leaf.items.insert(idx, value);
        self.len += 1;
        Ok(None)
    }

    /// Appends an element greater than every other. Ascending keys (an auto-increment id, a
    /// log replay) take no descent, and a full last leaf splits off just the new element, so
    /// leaves stay full instead of half empty: the last leaf is the one leaf allowed below
    /// `LEAF_MIN`.
    fn append(&mut self, value: T) {
        self.len += 1;
        let leaf = self.leaf_mut(self.last);
        if leaf.items.len() < LEAF_MAX {
            leaf.items.push(value);
            return;
        }
        let mut path = Path::new();
        let old_last = self.descend(&mut |_: &T| true, Some(&mut path));
        let new_id = self.alloc_id();
        let sep = value.clone();
        let mut items = new_leaf_vec();
        items.push(value);
        self.set(
            new_id,
            Node::Leaf(Leaf {
                items,
                prev: old_last,
                next: NONE,
            }),
        );
        self.leaf_mut(old_last).next = new_id;
        self.last = new_id;
        self.insert_separator(&path, path.len, sep, new_id);
    }

    /// Relieves an overfull leaf by moving one element to a sibling with room, so that
    /// ascending or descending insertion fills leaves instead of leaving them half empty.
    fn shift_to_sibling(&mut self, path: &Path, id: u32) -> bool {
        let Some(level) = self.height.checked_sub(1) else {
            return false;
        };
        let (parent_id, child) = path.get(level);
        let siblings = &self.inner(parent_id).children;
        let left = child.checked_sub(1).and_then(|c| siblings.get(c)).copied();
        let right = siblings.get(child + 1).copied();
        if let Some(left) = left.filter(|&l| self.leaf(l).items.len() < LEAF_MAX) {
            let moved = self.leaf_mut(id).items.remove(0);
            self.leaf_mut(left).items.push(moved);
            let first = self
                .leaf(id)
                .items
                .first()
                .expect("invariant: leaf was overfull")
                .clone();
            *self.sep_mut(parent_id, child - 1) = first;
            return true;
        }
        if let Some(right) = right.filter(|&r| self.leaf(r).items.len() < LEAF_MAX) {
            let moved = self
                .leaf_mut(id)
                .items
                .pop()
                .expect("invariant: leaf was overfull");
            self.leaf_mut(right).items.insert(0, moved.clone());
            *self.sep_mut(parent_id, child) = moved;
            return true;
        }
        false
    }

    /// Moves all but the first `keep` elements of an overfull leaf into a new leaf linked
    /// after it.
    fn split_leaf(&mut self, id: u32, keep: usize) -> (T, u32) {
        let new_id = self.alloc_id();
        let leaf = self.leaf_mut(id);
        let mid = keep;
        let mut items = new_leaf_vec();
        items.extend(leaf.items.drain(mid..));
        let next = std::mem::replace(&mut leaf.next, new_id);
        let sep = items
            .first()
            .expect("invariant: split half is non-empty")
            .clone();
        self.set(
            new_id,
            Node::Leaf(Leaf {
                items,
                prev: id,
                next,
            }),
        );
        if next == NONE {
            self.last = new_id;
        } else {
            self.leaf_mut(next).prev = new_id;
        }
        (sep, new_id)
    }

    /// Inserts separator `sep` and its right child below the inner node at `level - 1` of
    /// the path (or above the root when `level` is 0), splitting upwards as needed.
    fn insert_separator(&mut self, path: &Path, mut level: usize, mut sep: T, mut right_id: u32) {
        loop {
            if level == 0 {
                let old_root = self.root;
                let inner = Inner {
                    seps: vec![sep],
                    children: vec![old_root, right_id],
                };
                self.root = self.alloc(Node::Inner(inner));
                self.height += 1;
                return;
            }
            level -= 1;
            let (parent_id, child) = path.get(level);
            let parent = self.inner_mut(parent_id);
            parent.seps.insert(child, sep);
            parent.children.insert(child + 1, right_id);
            if parent.children.len() <= INNER_MAX {
                return;
            }
            (sep, right_id) = self.split_inner(parent_id);
        }
    }

    fn split_inner(&mut self, id: u32) -> (T, u32) {
        let inner = self.inner_mut(id);
        let mid = inner.children.len() / 2;
        let children = inner.children.split_off(mid);
        let seps = inner.seps.split_off(mid);
        let up = inner
            .seps
            .pop()
            .expect("invariant: a full inner node has separators");
        let new_id = self.alloc(Node::Inner(Inner { seps, children }));
        (up, new_id)
    }

    // ---- remove ----

    /// Removes and returns the element equal to the target of `cmp`.
    pub fn remove(&mut self, mut cmp: impl FnMut(&T) -> Ordering) -> Option<T> {
        let mut path = Path::new();
        let mut right = |x: &T| cmp(x) != Ordering::Greater;
        let leaf_id = self.descend(&mut right, Some(&mut path));
        let leaf = self.leaf_mut(leaf_id);
        let idx = leaf.items.partition_point(|x| cmp(x) == Ordering::Less);
        if leaf
            .items
            .get(idx)
            .is_none_or(|x| cmp(x) != Ordering::Equal)
        {
            return None;
        }
        let removed = leaf.items.remove(idx);
        self.len -= 1;
        if self.height > 0 && self.leaf(leaf_id).items.len() < LEAF_MIN {
            self.rebalance_leaf(&path, leaf_id);
        }
        Some(removed)
    }

    /// Refills an underfull leaf from a sibling, or merges it with one.
    fn rebalance_leaf(&mut self, path: &Path, id: u32) {
        let (parent_id, child) = path.get(self.height - 1);
        let siblings = &self.inner(parent_id).children;
        let left = child.checked_sub(1).and_then(|c| siblings.get(c)).copied();
        let right = siblings.get(child + 1).copied();
        if let Some(left) = left.filter(|&l| self.leaf(l).items.len() > LEAF_MIN) {
            let moved = self
                .leaf_mut(left)
                .items
                .pop()
                .expect("invariant: sibling above minimum");
            self.leaf_mut(id).items.insert(0, moved.clone());
            *self.sep_mut(parent_id, child - 1) = moved;
        } else if let Some(right) = right.filter(|&r| self.leaf(r).items.len() > LEAF_MIN) {
            let moved = self.leaf_mut(right).items.remove(0);
            self.leaf_mut(id).items.push(moved);
            let first = self
                .leaf(right)
                .items
                .first()
                .expect("invariant: sibling non-empty")
                .clone();
            *self.sep_mut(parent_id, child) = first;
        } else {
            match left {
                Some(left) => self.merge_leaves(parent_id, child - 1, left, id),
                None => {
                    let right = right.expect("invariant: a non-root leaf has a sibling");
                    self.merge_leaves(parent_id, child, id, right);
                }
            }
            self.rebalance_inner(path, self.height - 1);
        }
    }

    /// Appends leaf `right` (child `sep_idx + 1` of `parent_id`) to `left` and frees it.
    fn merge_leaves(&mut self, parent_id: u32, sep_idx: usize, left: u32, right: u32) {
        let Node::Leaf(right_leaf) = self.take(right) else {
            unreachable!("invariant: siblings of a leaf are leaves")
        };
        let next = right_leaf.next;
        let left_leaf = self.leaf_mut(left);
        let mut items = right_leaf.items;
        left_leaf.items.append(&mut items);
        left_leaf.next = next;
        if next == NONE {
            self.last = left;
        } else {
            self.leaf_mut(next).prev = left;
        }
        let parent = self.inner_mut(parent_id);
        parent.seps.remove(sep_idx);
        parent.children.remove(sep_idx + 1);
        self.free.push(right);
    }

    /// Restores the minimum fill of the inner node at `level` of the path, walking upwards.
    fn rebalance_inner(&mut self, path: &Path, mut level: usize) {
        loop {
            let (id, _) = path.get(level);
            let count = self.inner(id).children.len();
            if level == 0 {
                if count == 1 {
                    self.collapse_root(id);
                }
                return;
            }
            if count >= INNER_MIN {
                return;
            }
            let (parent_id, child) = path.get(level - 1);
            if !self.refill_inner(parent_id, child, id) {
                return;
            }
            level -= 1;
        }
    }

    /// Borrows a child from a sibling of inner node `id` (child `child` of `parent_id`), or
    /// merges with a sibling. Returns whether the parent lost a child (and may underflow).
    fn refill_inner(&mut self, parent_id: u32, child: usize, id: u32) -> bool {
        let siblings = &self.inner(parent_id).children;
        let left = child.checked_sub(1).and_then(|c| siblings.get(c)).copied();
        let right = siblings.get(child + 1).copied();
        if let Some(left) = left.filter(|&l| self.inner(l).children.len() > INNER_MIN) {
            let inner = self.inner_mut(left);
            let moved_child = inner
                .children
                .pop()
                .expect("invariant: sibling above minimum");
            let up = inner.seps.pop().expect("invariant: sibling has separators");
            let down = std::mem::replace(self.sep_mut(parent_id, child - 1), up);
            let node = self.inner_mut(id);
            node.seps.insert(0, down);
            node.children.insert(0, moved_child);
            return false;
        }
        if let Some(right) = right.filter(|&r| self.inner(r).children.len() > INNER_MIN) {
            let inner = self.inner_mut(right);
            let moved_child = inner.children.remove(0);
            let up = inner.seps.remove(0);
            let down = std::mem::replace(self.sep_mut(parent_id, child), up);
            let node = self.inner_mut(id);
            node.seps.push(down);
            node.children.push(moved_child);
            return false;
        }
        match left {
            Some(left) => self.merge_inners(parent_id, child - 1, left, id),
            None => {
                let right = right.expect("invariant: a non-root inner node has a sibling");
                self.merge_inners(parent_id, child, id, right);
            }
        }
        true
    }

    /// Appends inner node `right` to `left`, pulling their separator down from the parent.
    fn merge_inners(&mut self, parent_id: u32, sep_idx: usize, left: u32, right: u32) {
        let Node::Inner(right_node) = self.take(right) else {
            unreachable!("invariant: siblings of an inner node are inner nodes")
        };
        let parent = self.inner_mut(parent_id);
        let down = parent.seps.remove(sep_idx);
        parent.children.remove(sep_idx + 1);
        let left_node = self.inner_mut(left);
        left_node.seps.push(down);
        left_node.seps.extend(right_node.seps);
        left_node.children.extend(right_node.children);
        self.free.push(right);
    }

    fn collapse_root(&mut self, id: u32) {
        let Node::Inner(root) = self.take(id) else {
            unreachable!("invariant: root is inner")
        };
        self.root = *root.children.first().expect("invariant: one child left");
        self.height -= 1;
        self.free.push(id);
    }

    // ---- bulk build ----

    /// Builds a tree from elements already in strictly ascending order, filling leaves
    /// evenly (each at least half full), which is much faster than inserting one by one.
    pub fn from_sorted(items: Vec<T>) -> BPlusTree<T> {
        let len = items.len();
        if len <= LEAF_MAX {
            let mut leaf = new_leaf_vec();
            leaf.extend(items);
            let root = Node::Leaf(Leaf {
                items: leaf,
                prev: NONE,
                next: NONE,
            });
            return BPlusTree {
                nodes: vec![root],
                free: Vec::new(),
                root: 0,
                height: 0,
                len,
                first: 0,
                last: 0,
            };
        }
        let mut tree = BPlusTree {
            nodes: Vec::with_capacity(len / LEAF_MIN + len / (LEAF_MIN * INNER_MIN) + 4),
            free: Vec::new(),
            root: 0,
            height: 0,
            len,
            first: 0,
            last: 0,
        };
        let mut level = tree.build_leaves(items);
        while level.len() > 1 {
            level = tree.build_inner_level(level);
            tree.height += 1;
        }
        let (root, _) = level
            .pop()
            .expect("invariant: a non-empty build has a root");
        tree.root = root;
        tree
    }

    /// Creates the linked leaves; returns each leaf with its first element.
    fn build_leaves(&mut self, items: Vec<T>) -> Vec<(u32, T)> {
        let sizes = even_split(items.len(), LEAF_MAX);
        let mut level = Vec::with_capacity(sizes.len());
        let mut iter = items.into_iter();
        let base = self.nodes.len() as u32;
        let count = sizes.len() as u32;
        for (i, size) in sizes.into_iter().enumerate() {
            let mut leaf = new_leaf_vec();
            leaf.extend(iter.by_ref().take(size));
            let id = base + i as u32;
            let prev = if i == 0 { NONE } else { id - 1 };
            let next = if id + 1 == base + count { NONE } else { id + 1 };
            let min = leaf
                .first()
                .expect("invariant: built leaves are non-empty")
                .clone();
            self.nodes.push(Node::Leaf(Leaf {
                items: leaf,
                prev,
                next,
            }));
            level.push((id, min));
        }
        self.first = base;
        self.last = base + count - 1;
        level
    }

    fn build_inner_level(&mut self, below: Vec<(u32, T)>) -> Vec<(u32, T)> {
        let sizes = even_split(below.len(), INNER_MAX);
        let mut level = Vec::with_capacity(sizes.len());
        let mut iter = below.into_iter();
        for size in sizes {
            let mut group = iter.by_ref().take(size);
            let (first_id, min) = group.next().expect("invariant: groups are non-empty");
            let mut inner = Inner {
                seps: Vec::with_capacity(size),
                children: vec![first_id],
            };
            for (id, sep) in group {
                inner.children.push(id);
                inner.seps.push(sep);
            }
            let id = self.alloc(Node::Inner(inner));
            level.push((id, min));
        }
        level
    }

    // ---- iteration ----

    /// All elements in ascending order.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            tree: self,
            leaf: self.first,
            idx: 0,
        }
    }

    /// The leaves' item slices in ascending order: the cheapest full scan (no per-item
    /// iterator state), used to take read views.
    pub fn leaf_slices(&self) -> impl Iterator<Item = &[T]> + '_ {
        let mut leaf = self.first;
        std::iter::from_fn(move || match self.nodes.get(leaf as usize) {
            Some(Node::Leaf(l)) => {
                leaf = l.next;
                Some(l.items.as_slice())
            }
            _ => None,
        })
    }

    // ---- arena ----

    fn node(&self, id: u32) -> &Node<T> {
        self.nodes
            .get(id as usize)
            .expect("invariant: node ids are in range")
    }

    fn leaf(&self, id: u32) -> &Leaf<T> {
        match self.node(id) {
            Node::Leaf(leaf) => leaf,
            _ => unreachable!("invariant: node {id} is a leaf"),
        }
    }

    fn leaf_mut(&mut self, id: u32) -> &mut Leaf<T> {
        match self.nodes.get_mut(id as usize) {
            Some(Node::Leaf(leaf)) => leaf,
            _ => unreachable!("invariant: node {id} is a leaf"),
        }
    }

    fn inner(&self, id: u32) -> &Inner<T> {
        match self.node(id) {
            Node::Inner(inner) => inner,
            _ => unreachable!("invariant: node {id} is an inner node"),
        }
    }

    fn inner_mut(&mut self, id: u32) -> &mut Inner<T> {
        match self.nodes.get_mut(id as usize) {
            Some(Node::Inner(inner)) => inner,
            _ => unreachable!("invariant: node {id} is an inner node"),
        }
    }

    fn sep_mut(&mut self, id: u32, idx: usize) -> &mut T {
        self.inner_mut(id)
            .seps
            .get_mut(idx)
            .expect("invariant: separator index in range")
    }

    fn take(&mut self, id: u32) -> Node<T> {
        let slot = self
            .nodes
            .get_mut(id as usize)
            .expect("invariant: node ids are in range");
        std::mem::replace(slot, Node::Free)
    }

    fn set(&mut self, id: u32, node: Node<T>) {
        *self
            .nodes
            .get_mut(id as usize)
            .expect("invariant: node ids are in range") = node;
    }

    fn alloc_id(&mut self) -> u32 {
        match self.free.pop() {
            Some(id) => id,
            None => {
                self.nodes.push(Node::Free);
                u32::try_from(self.nodes.len() - 1).expect("invariant: fewer than 2^32 nodes")
            }
        }
    }

    fn alloc(&mut self, node: Node<T>) -> u32 {
        let id = self.alloc_id();
        self.set(id, node);
        id
    }
}

/// Leaves are allocated once at their final capacity (one over the maximum, since a leaf
/// splits after the insert that overfills it), so they never reallocate.
/// Where `value` belongs among a leaf's `items`: the index of the first element not below it,
/// and whether that element equals it.
fn slot_in<T>(items: &[T], value: &T, cmp: &mut impl FnMut(&T, &T) -> Ordering) -> (usize, bool) {
    let idx = items.partition_point(|x| cmp(x, value) == Ordering::Less);
    let equal = items
        .get(idx)
        .is_some_and(|x| cmp(x, value) == Ordering::Equal);
    (idx, equal)
}

/// Starts loading every cache line of a node's elements at once. A binary search over a
/// node that is not in cache would otherwise wait for its lines one after another; issued
/// together, they arrive in about the time of one miss.
#[inline(always)]
fn prefetch<T>(items: &[T]) {
    let base = items.as_ptr().cast::<u8>();
    let bytes = std::mem::size_of_val(items);
    let mut offset = 0;
    while offset < bytes {
        crate::prefetch::line(base.wrapping_add(offset));
        offset += 64;
    }
}

fn new_leaf_vec<T>() -> Vec<T> {
    Vec::with_capacity(LEAF_MAX + 1)
}

/// Splits `n` items into the fewest groups of at most `max`, with sizes differing by at most
/// one (so each is at least `max / 2` when there is more than one group).
fn even_split(n: usize, max: usize) -> Vec<usize> {
    let groups = n.div_ceil(max).max(1);
    let base = n / groups;
    let extra = n % groups;
    (0..groups).map(|i| base + usize::from(i < extra)).collect()
}

/// Ascending iterator over every element.
pub struct Iter<'a, T> {
    tree: &'a BPlusTree<T>,
    leaf: u32,
    idx: usize,
}

impl<'a, T: Clone> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        loop {
            let leaf = match self.tree.nodes.get(self.leaf as usize) {
                Some(Node::Leaf(leaf)) => leaf,
                _ => return None,
            };
            if let Some(item) = leaf.items.get(self.idx) {
                self.idx += 1;
                return Some(item);
            }
            self.leaf = leaf.next;
            self.idx = 0;
        }
    }
}

#[cfg(test)]
impl<T: Clone + std::fmt::Debug> BPlusTree<T> {
    /// Checks every structural invariant against `cmp`; panics with a description on failure.
    pub fn check_invariants(&self, cmp: &impl Fn(&T, &T) -> Ordering) {
        let mut leaves = Vec::new();
        let count = self.check_node(self.root, 0, None, None, cmp, &mut leaves);
        assert_eq!(count, self.len, "element count");
        assert_eq!(leaves.first().copied(), Some(self.first), "first leaf");
        assert_eq!(leaves.last().copied(), Some(self.last), "last leaf");
        for pair in leaves.windows(2) {
            assert_eq!(self.leaf(pair[0]).next, pair[1], "next link");
            assert_eq!(self.leaf(pair[1]).prev, pair[0], "prev link");
        }
        let all: Vec<&T> = self.iter().collect();
        assert_eq!(all.len(), self.len);
        for w in all.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Ordering::Less, "strictly ascending");
        }
    }

    fn check_node(
        &self,
        id: u32,
        depth: usize,
        low: Option<&T>,
        high: Option<&T>,
        cmp: &impl Fn(&T, &T) -> Ordering,
        leaves: &mut Vec<u32>,
    ) -> usize {
        let in_bounds = |x: &T| {
            low.is_none_or(|l| cmp(l, x) != Ordering::Greater)
                && high.is_none_or(|h| cmp(x, h) == Ordering::Less)
        };
        match self.node(id) {
            Node::Leaf(leaf) => {
                assert_eq!(depth, self.height, "leaves at one depth");
                if id != self.root {
                    let min = if id == self.last { 1 } else { LEAF_MIN };
                    assert!(
                        leaf.items.len() >= min && leaf.items.len() <= LEAF_MAX,
                        "leaf fill"
                    );
                }
                assert!(
                    leaf.items.iter().all(in_bounds),
                    "leaf elements within separators"
                );
                leaves.push(id);
                leaf.items.len()
            }
            Node::Inner(inner) => {
                assert_eq!(inner.children.len(), inner.seps.len() + 1);
                if id != self.root {
                    assert!(inner.children.len() >= INNER_MIN, "inner fill");
                } else {
                    assert!(inner.children.len() >= 2, "root fan-out");
                }
                assert!(inner.children.len() <= INNER_MAX);
                let mut total = 0;
                for (i, &child) in inner.children.iter().enumerate() {
                    let lo = if i == 0 { low } else { inner.seps.get(i - 1) };
                    let hi = inner.seps.get(i).or(high);
                    total += self.check_node(child, depth + 1, lo, hi, cmp, leaves);
                }
                total
            }
            Node::Free => panic!("free node {id} reachable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn cmp_to(v: u32) -> impl Fn(&u32) -> Ordering {
        move |x: &u32| x.cmp(&v)
    }

    fn leaf_count(tree: &BPlusTree<u32>) -> usize {
        tree.nodes
            .iter()
            .filter(|n| matches!(n, Node::Leaf(_)))
            .count()
    }

    fn check(tree: &BPlusTree<u32>, model: &BTreeSet<u32>) {
        tree.check_invariants(&|a: &u32, b: &u32| a.cmp(b));
        let got: Vec<u32> = tree.iter().copied().collect();
        let want: Vec<u32> = model.iter().copied().collect();
        assert_eq!(got, want);
    }

    proptest! {
        #[test]
        fn batched_searches_match_single_ones(
            keys in proptest::collection::btree_set(0u32..5000, 0..3000),
            probes in proptest::collection::vec(0u32..5100, 1..100),
        ) {
            let mut tree = BPlusTree::new();
            for &k in &keys {
                tree.insert(k, u32::cmp);
            }
            let mut searches: Vec<_> = probes.iter().map(|&p| move |x: &u32| *x < p).collect();
            let mut seen = 0;
            let batched = tree.partition_points(&mut searches, |_| seen += 1);
            for (&p, pos) in probes.iter().zip(&batched) {
                prop_assert_eq!(*pos, tree.partition_point(|x| *x < p));
            }
            prop_assert!(seen <= probes.len());
        }
    }

    #[test]
    fn grows_and_shrinks_through_several_levels() {
        let mut tree = BPlusTree::new();
        let mut model = BTreeSet::new();
        // A multiplicative permutation of 0..N visits keys in scattered order.
        let n = 20_000u32;
        for i in 0..n {
            let k = (i * 7919) % n;
            assert!(tree.insert(k, u32::cmp).is_none());
            model.insert(k);
        }
        check(&tree, &model);
        assert!(tree.height >= 2);
        for i in 0..n {
            let k = (i * 104_729) % n;
            if !k.is_multiple_of(3) {
                assert_eq!(tree.remove(cmp_to(k)), Some(k));
                model.remove(&k);
            }
        }
        check(&tree, &model);
        for k in 0..n {
            tree.remove(cmp_to(k));
        }
        assert!(tree.is_empty());
        assert_eq!(tree.height, 0);
        check(&tree, &BTreeSet::new());
    }

    #[test]
    fn ascending_inserts_fill_leaves_and_survive_removal() {
        let mut tree = BPlusTree::new();
        let mut model = BTreeSet::new();
        let n = 10_000u32;
        for k in 0..n {
            assert!(tree.insert(k, u32::cmp).is_none());
            model.insert(k);
            if k % 997 == 0 {
                check(&tree, &model);
            }
        }
        check(&tree, &model);
        // Every leaf but the last is full: appends do not leave half-empty leaves behind.
        let leaves = leaf_count(&tree);
        assert_eq!(leaves, (n as usize).div_ceil(LEAF_MAX));
        // The short last leaf borrows and merges like any other when keys leave.
        for k in (0..n).rev().step_by(3) {
            assert_eq!(tree.remove(cmp_to(k)), Some(k));
            model.remove(&k);
            if k % 101 == 0 {
                check(&tree, &model);
            }
        }
        check(&tree, &model);
        for k in n..n + 500 {
            tree.insert(k, u32::cmp);
            model.insert(k);
        }
        check(&tree, &model);
    }

    #[test]
    fn nearly_ascending_inserts_keep_leaves_mostly_full() {
        let mut tree = BPlusTree::new();
        let mut model = BTreeSet::new();
        let n = 20_000u32;
        // Ascending overall, every run of 16 keys reversed: concurrent inserters.
        for k in (0..n).map(|i| (i / 16) * 16 + 15 - i % 16) {
            assert!(tree.insert(k, u32::cmp).is_none());
            model.insert(k);
        }
        check(&tree, &model);
        let leaves = leaf_count(&tree);
        assert!(
            leaves <= (n as usize).div_ceil(LEAF_MAX - LAST_LEAF_SPARE) + 1,
            "{leaves} leaves for {n} keys"
        );
    }

    #[test]
    fn bulk_build_matches_inserts() {
        for n in [0usize, 1, 63, 64, 65, 128, 129, 4095, 4096, 4097, 100_000] {
            let items: Vec<u32> = (0..n as u32).map(|i| i * 2).collect();
            let mut tree = BPlusTree::from_sorted(items.clone());
            let mut model: BTreeSet<u32> = items.into_iter().collect();
            check(&tree, &model);
            for k in (0..n as u32 * 2).step_by(3) {
                if tree.insert(k, u32::cmp).is_none() {
                    model.insert(k);
                }
            }
            check(&tree, &model);
        }
    }

    #[test]
    fn positions_walk_both_ways() {
        let tree = BPlusTree::from_sorted((0..1000u32).collect());
        let mut pos = tree.partition_point(|x| *x < 500);
        assert_eq!(tree.get(pos), Some(&500));
        for want in (0..500).rev() {
            pos = tree.prev(pos).unwrap();
            assert_eq!(tree.get(pos), Some(&want));
        }
        assert_eq!(tree.prev(pos), None);
        let end = tree.partition_point(|_| true);
        assert_eq!(end, tree.end());
        assert_eq!(tree.get(end), None);
        assert_eq!(tree.get(tree.prev(end).unwrap()), Some(&999));
        assert_eq!(tree.next(end), end);
    }

    proptest! {
        #[test]
        fn random_ops_match_btreeset(ops in proptest::collection::vec((any::<bool>(), 0u32..600), 1..3000)) {
            let mut tree = BPlusTree::new();
            let mut model = BTreeSet::new();
            for (insert, k) in ops {
                if insert {
                    prop_assert_eq!(tree.insert(k, u32::cmp).is_some(), !model.insert(k));
                } else {
                    prop_assert_eq!(tree.remove(cmp_to(k)).is_some(), model.remove(&k));
                }
                let probe = k / 2 * 3;
                let pos = tree.partition_point(|x| *x < probe);
                prop_assert_eq!(tree.get(pos), model.range(probe..).next());
                prop_assert_eq!(tree.find(cmp_to(k)), model.get(&k));
            }
            check(&tree, &model);
        }
    }
}

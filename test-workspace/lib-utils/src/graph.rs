//! A small generic directed graph with traversal, topological ordering and
//! cycle detection, the way a build tool orders the crates of a workspace.
//!
//! An edge `a -> b` means "`a` depends on `b`": a topological order lists
//! every node after all of the nodes it points to.

use lib_common::{AppError, AppResult, Describe};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;

/// Errors reported by graph operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError<N> {
    /// The node is not part of the graph.
    UnknownNode(N),
    /// The graph contains a cycle; the nodes are listed in cycle order.
    Cycle(Vec<N>),
}

impl<N: fmt::Display> fmt::Display for GraphError<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::UnknownNode(n) => write!(f, "unknown node '{}'", n),
            GraphError::Cycle(nodes) => {
                write!(f, "dependency cycle: ")?;
                for n in nodes {
                    write!(f, "{} -> ", n)?;
                }
                match nodes.first() {
                    Some(first) => write!(f, "{}", first),
                    None => Ok(()),
                }
            }
        }
    }
}

impl<N: fmt::Debug + fmt::Display> std::error::Error for GraphError<N> {}

impl<N: fmt::Display> From<GraphError<N>> for AppError {
    fn from(e: GraphError<N>) -> Self {
        AppError::Parse(e.to_string())
    }
}

/// A directed graph whose nodes are values of type `N`.
///
/// Nodes are kept in insertion order, and so are the edges of each node,
/// which makes every traversal deterministic.
#[derive(Debug, Clone)]
pub struct Graph<N> {
    nodes: Vec<N>,
    index: HashMap<N, usize>,
    edges: Vec<Vec<usize>>,
}

impl<N> Default for Graph<N> {
    fn default() -> Self {
        Graph { nodes: Vec::new(), index: HashMap::new(), edges: Vec::new() }
    }
}

/// Visiting state of a node during depth-first search.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    New,
    Active,
    Done,
}

impl<N: Hash + Eq + Clone> Graph<N> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Build a graph from `(from, to)` pairs, adding nodes as they appear.
    pub fn from_edges<I: IntoIterator<Item = (N, N)>>(edges: I) -> Self {
        let mut g = Self::new();
        for (a, b) in edges {
            g.add_edge(a, b);
        }
        g
    }

    /// Add a node (no-op if present) and return its index.
    pub fn add_node(&mut self, n: N) -> usize {
        if let Some(&i) = self.index.get(&n) {
            return i;
        }
        let i = self.nodes.len();
        self.index.insert(n.clone(), i);
        self.nodes.push(n);
        self.edges.push(Vec::new());
        i
    }

    /// Add the edge `from -> to`, adding missing nodes. Duplicate edges are
    /// ignored; returns whether the edge was new.
    pub fn add_edge(&mut self, from: N, to: N) -> bool {
        let a = self.add_node(from);
        let b = self.add_node(to);
        if self.edges[a].contains(&b) {
            return false;
        }
        self.edges[a].push(b);
        true
    }

    pub fn contains(&self, n: &N) -> bool {
        self.index.contains_key(n)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn edge_count(&self) -> usize {
        self.edges.iter().map(Vec::len).sum()
    }

    /// All nodes in insertion order.
    pub fn nodes(&self) -> impl Iterator<Item = &N> {
        self.nodes.iter()
    }

    /// All edges as `(from, to)` pairs.
    pub fn edges(&self) -> impl Iterator<Item = (&N, &N)> {
        self.edges
            .iter()
            .enumerate()
            .flat_map(move |(a, out)| out.iter().map(move |&b| (&self.nodes[a], &self.nodes[b])))
    }

    /// Graph with every edge reversed (dependents instead of dependencies).
    pub fn reversed(&self) -> Self {
        Graph { nodes: self.nodes.clone(), index: self.index.clone(), edges: self.incoming() }
    }

    /// For every node, the indices of the nodes with an edge to it.
    fn incoming(&self) -> Vec<Vec<usize>> {
        let mut inc = vec![Vec::new(); self.nodes.len()];
        for (a, out) in self.edges.iter().enumerate() {
            for &b in out {
                inc[b].push(a);
            }
        }
        inc
    }

    /// Breadth-first order of the nodes reachable from `start`.
    pub fn bfs(&self, start: &N) -> Result<Vec<&N>, GraphError<N>> {
        let s = self.idx(start)?;
        let mut seen = vec![false; self.nodes.len()];
        let mut queue = VecDeque::from([s]);
        let mut out = Vec::new();
        seen[s] = true;
        while let Some(i) = queue.pop_front() {
            out.push(&self.nodes[i]);
            for &j in &self.edges[i] {
                if !std::mem::replace(&mut seen[j], true) {
                    queue.push_back(j);
                }
            }
        }
        Ok(out)
    }

    /// Shortest path (fewest edges) from `from` to `to`, both included.
    pub fn shortest_path(&self, from: &N, to: &N) -> Result<Option<Vec<&N>>, GraphError<N>> {
        let (s, t) = (self.idx(from)?, self.idx(to)?);
        let mut parent: Vec<Option<usize>> = vec![None; self.nodes.len()];
        let mut seen = vec![false; self.nodes.len()];
        let mut queue = VecDeque::from([s]);
        seen[s] = true;
        while let Some(i) = queue.pop_front() {
            if i == t {
                let mut path = vec![&self.nodes[t]];
                let mut cur = t;
                while let Some(p) = parent[cur] {
                    path.push(&self.nodes[p]);
                    cur = p;
                }
                path.reverse();
                return Ok(Some(path));
            }
            for &j in &self.edges[i] {
                if !std::mem::replace(&mut seen[j], true) {
                    parent[j] = Some(i);
                    queue.push_back(j);
                }
            }
        }
        Ok(None)
    }

    /// Dependencies-first order (depth-first post-order, starting from the
    /// nodes in insertion order). Fails with the first cycle found.
    pub fn topo_sort(&self) -> Result<Vec<N>, GraphError<N>> {
        let mut marks = vec![Mark::New; self.nodes.len()];
        let mut path = Vec::new();
        let mut order = Vec::with_capacity(self.nodes.len());
        for s in 0..self.nodes.len() {
            self.visit(s, &mut marks, &mut path, &mut order)?;
        }
        Ok(order.into_iter().map(|i| self.nodes[i].clone()).collect())
    }

    /// A cycle of the graph, if there is one, in edge order.
    pub fn find_cycle(&self) -> Option<Vec<N>> {
        match self.topo_sort() {
            Err(GraphError::Cycle(c)) => Some(c),
            _ => None,
        }
    }

    pub fn is_acyclic(&self) -> bool {
        self.find_cycle().is_none()
    }

    /// Depth-first visit of `i`: appends finished nodes to `order`, and
    /// reports a cycle when it reaches a node that is still on `path`.
    fn visit(
        &self,
        i: usize,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), GraphError<N>> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let start = path.iter().position(|&p| p == i).expect("active node is on the path");
                let cycle = path[start..].iter().map(|&p| self.nodes[p].clone()).collect();
                return Err(GraphError::Cycle(cycle));
            }
            Mark::New => {}
        }
        marks[i] = Mark::Active;
        path.push(i);
        for &j in &self.edges[i] {
            self.visit(j, marks, path, order)?;
        }
        path.pop();
        marks[i] = Mark::Done;
        order.push(i);
        Ok(())
    }

    /// Group nodes into levels: each node only depends on nodes of earlier
    /// levels, so the nodes of one level can be built in parallel.
    pub fn levels(&self) -> Result<Vec<Vec<N>>, GraphError<N>> {
        let mut pending: Vec<usize> = self.edges.iter().map(Vec::len).collect();
        let dependents = self.incoming();
        let mut ready: Vec<usize> = (0..self.nodes.len()).filter(|&i| pending[i] == 0).collect();
        let mut levels = Vec::new();
        let mut placed = 0;
        while !ready.is_empty() {
            let mut next = Vec::new();
            for &i in &ready {
                for &d in &dependents[i] {
                    pending[d] -= 1;
                    if pending[d] == 0 {
                        next.push(d);
                    }
                }
            }
            placed += ready.len();
            next.sort_unstable();
            levels.push(ready.iter().map(|&i| self.nodes[i].clone()).collect());
            ready = next;
        }
        if placed < self.nodes.len() {
            return Err(GraphError::Cycle(self.find_cycle().unwrap_or_default()));
        }
        Ok(levels)
    }

    fn idx(&self, n: &N) -> Result<usize, GraphError<N>> {
        self.index.get(n).copied().ok_or_else(|| GraphError::UnknownNode(n.clone()))
    }
}

impl<N> Describe for Graph<N> {
    fn name(&self) -> String {
        format!("Graph(nodes={})", self.nodes.len())
    }
}

impl<N: fmt::Display> fmt::Display for Graph<N> {
    /// One line per node: `node -> dep, dep`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, out) in self.nodes.iter().zip(&self.edges) {
            write!(f, "{}", n)?;
            for (k, &j) in out.iter().enumerate() {
                write!(f, "{}{}", if k == 0 { " -> " } else { ", " }, self.nodes[j])?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Parse a dependency spec such as `"app -> utils, math; utils -> common"`.
/// Entries are separated by `;` or newlines; a name without `->` is a node
/// with no dependencies.
pub fn parse_graph(spec: &str) -> AppResult<Graph<String>> {
    let mut g = Graph::new();
    for entry in spec.split([';', '\n']).map(str::trim).filter(|e| !e.is_empty()) {
        let (from, deps) = match entry.split_once("->") {
            Some((f, d)) => (f.trim(), Some(d)),
            None => (entry, None),
        };
        if from.is_empty() || from.contains(char::is_whitespace) {
            return Err(AppError::Parse(format!("bad node name in '{}'", entry)));
        }
        g.add_node(from.to_string());
        for dep in deps.into_iter().flat_map(|d| d.split(',')).map(str::trim) {
            if dep.is_empty() || dep.contains(char::is_whitespace) {
                return Err(AppError::Parse(format!("bad dependency in '{}'", entry)));
            }
            g.add_edge(from.to_string(), dep.to_string());
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &str = "main -> advanced, utils; advanced -> math, parser; \
                      parser -> utils; utils -> common; math -> common";

    #[test]
    fn topo_order_respects_edges() {
        let g = parse_graph(WS).unwrap();
        let order = g.topo_sort().unwrap();
        let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
        for (a, b) in g.edges() {
            assert!(pos(b) < pos(a), "{} must come before {}", b, a);
        }
        assert_eq!(order.first().map(String::as_str), Some("common"));
        assert_eq!(g.levels().unwrap()[1], vec!["utils", "math"]);
    }

    #[test]
    fn cycles_are_reported() {
        let g = Graph::from_edges([(1, 2), (2, 3), (3, 1), (0, 1)]);
        assert_eq!(g.find_cycle(), Some(vec![1, 2, 3]));
        assert_eq!(g.topo_sort(), Err(GraphError::Cycle(vec![1, 2, 3])));
        let err = AppError::from(parse_graph("a -> b; b -> a").unwrap().topo_sort().unwrap_err());
        assert_eq!(err, AppError::Parse("dependency cycle: a -> b -> a".into()));
    }

    #[test]
    fn traversals() {
        let g = Graph::from_edges([('a', 'b'), ('a', 'c'), ('b', 'd'), ('c', 'd'), ('d', 'e')]);
        assert_eq!(g.bfs(&'a').unwrap(), [&'a', &'b', &'c', &'d', &'e']);
        assert_eq!(g.shortest_path(&'a', &'e').unwrap().unwrap(), [&'a', &'b', &'d', &'e']);
        assert_eq!(g.shortest_path(&'e', &'a').unwrap(), None);
        assert_eq!(g.bfs(&'z'), Err(GraphError::UnknownNode('z')));
    }

    #[test]
    fn dependents_and_parse_errors() {
        let rev = parse_graph(WS).unwrap().reversed();
        assert_eq!(rev.bfs(&"parser".to_string()).unwrap(), ["parser", "advanced", "main"]);
        assert!(parse_graph("a b -> c").is_err());
        assert!(parse_graph("a -> b,").is_err());
    }
}

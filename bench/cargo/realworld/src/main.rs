//! A small program touching every dependency, so nothing is optimised out
//! and nothing is an unused dependency.
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use indexmap::IndexMap;
use itertools::Itertools;
use once_cell::sync::Lazy;
use parking_lot::Mutex;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smallvec::SmallVec;

const TEXT: &str = "the quick brown fox jumps over the lazy dog";

static WORD_RE: Lazy<Regex> = Lazy::new(|| Regex::new(r"\b\w+\b").expect("valid regex"));

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    n: u64,
}

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("expected {expected} files in the temp dir, found {found}")]
    FileCount { expected: usize, found: usize },
}

#[derive(Serialize, Deserialize, Debug)]
struct Config {
    name: String,
    seed: u64,
    epoch: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Summary {
    n: u64,
    sum_of_squares: u64,
    words: usize,
    word_lengths: IndexMap<String, usize>,
    digest: String,
    id: String,
}

fn main() -> Result<()> {
    env_logger::init();
    // tracing-subscriber: quiet unless RUST_LOG is set (env_logger reads it too).
    let level = if std::env::var_os("RUST_LOG").is_some() {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    // toml + chrono: configuration parsed from an embedded document.
    let config: Config =
        toml::from_str("name = \"realworld\"\nseed = 42\nepoch = \"2024-01-01T00:00:00Z\"\n")
            .context("parsing the embedded config")?;
    let later = Duration::try_days(args.n as i64)
        .and_then(|d| config.epoch.checked_add_signed(d))
        .context("date out of range")?;
    tracing::info!(name = %config.name, "loaded config");

    // rayon: parallel sum; crossbeam-channel + parking_lot: four workers fan in.
    let sum_of_squares: u64 = (1..=args.n).into_par_iter().map(|x| x * x).sum();
    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
    let total = Arc::new(Mutex::new(0u64));
    std::thread::scope(|s| {
        for chunk in (1..=args.n)
            .chunks((args.n as usize / 4).max(1))
            .into_iter()
            .map(|c| c.collect::<Vec<_>>())
        {
            let tx = tx.clone();
            s.spawn(move || tx.send(chunk.iter().sum()).expect("receiver alive"));
        }
        drop(tx);
        for part in rx.iter() {
            *total.lock() += part;
        }
    });
    let total = *total.lock();

    // regex + once_cell + indexmap + itertools + smallvec: word statistics.
    let words: SmallVec<[&str; 16]> = WORD_RE.find_iter(TEXT).map(|m| m.as_str()).collect();
    let mut word_lengths = IndexMap::new();
    for w in words.iter().unique() {
        word_lengths.insert((*w).to_string(), w.len());
    }
    let counts: HashMap<&str, usize> = words.iter().copied().counts();

    // bytes + sha2 + hex + base64: hash a buffer and encode it two ways.
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u64(sum_of_squares);
    buf.put_slice(TEXT.as_bytes());
    let hash = Sha256::digest(buf.freeze());
    let digest = hex::encode(hash);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&hash[..8]);

    // rand: a seeded pick; uuid: a random v4 id.
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let pick: u32 = rng.random_range(0..100);
    let id = uuid::Uuid::new_v4();

    // tempfile + walkdir: write a few files and walk them back.
    let dir = tempfile::tempdir()?;
    for i in 0..3 {
        let mut f = std::fs::File::create(dir.path().join(format!("f{i}.txt")))?;
        writeln!(f, "{}", words[i])?;
    }
    let found = walkdir::WalkDir::new(dir.path())
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .count();
    if found != 3 {
        return Err(BenchError::FileCount { expected: 3, found }.into());
    }

    let s = Summary {
        n: args.n,
        sum_of_squares,
        words: words.len(),
        word_lengths,
        digest,
        id: id.to_string(),
    };
    log::info!("computed {:?}", s);
    println!("{}", serde_json::to_string(&s)?);
    println!(
        "sum 1..={} = {} (via channel), 'the' x{}",
        args.n, total, counts["the"]
    );
    println!(
        "{} + {} days = {}",
        config.epoch.format("%Y-%m-%d"),
        args.n,
        later.format("%Y-%m-%d")
    );
    println!("sha256 prefix (base64): {b64}; random pick: {pick}; temp files walked: {found}");
    Ok(())
}

//! A small program touching every dependency, so nothing is optimised out.
use anyhow::Result;
use clap::Parser;
use rayon::prelude::*;
use regex::Regex;
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    n: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Summary {
    n: u64,
    sum_of_squares: u64,
    words: usize,
}

fn main() -> Result<()> {
    env_logger::init();
    let args = Args::parse();
    let sum_of_squares: u64 = (1..=args.n).into_par_iter().map(|x| x * x).sum();
    let re = Regex::new(r"\b\w+\b")?;
    let words = re.find_iter("the quick brown fox jumps over the lazy dog").count();
    let s = Summary { n: args.n, sum_of_squares, words };
    log::info!("computed {:?}", s);
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}

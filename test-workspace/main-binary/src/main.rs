//! main-binary: exercises every crate of the workspace.

use lib_advanced::solver::{integrate, solve};
use lib_advanced::{analyze, describe_pipeline, evaluate_all};
use lib_common::version::app_version;
use lib_common::{app_log, banner, btmap, AppError, Describe, Meters, Registry};
use lib_math::rational::harmonic;
use lib_math::{add, fibonacci, gcd, primes_up_to, Matrix, Rational};
use lib_parser::{parse_json, Calculator};
use lib_utils::graph::parse_graph;
use lib_utils::{is_palindrome, join, reverse, to_camel_case, LruCache, PairsExt};

fn main() {
    println!("{}", banner());
    println!("{}", app_log!("5 + 3 = {}", add(5, 3)));
    println!("{}", app_log!("fib(30) = {}, gcd(84, 36) = {}", fibonacci(30), gcd(84, 36)));
    println!("{}", app_log!("primes < 30: {}", join(&primes_up_to(30), ",")));

    let m = Matrix::from_rows([[1, 2], [3, 4]]);
    println!("{}", app_log!("{} squared = {:?}, trace {}", m.describe(), m.mul(&m), m.trace()));
    println!("{}", app_log!("{} + {} = {}", Meters(1.5), Meters(2.0), Meters(1.5) + Meters(2.0)));

    println!(
        "{}",
        app_log!(
            "reverse(\"distbuild\") = {}, camel = {}, palindrome(racecar) = {}",
            reverse("distbuild"),
            to_camel_case("remote_exec cache"),
            is_palindrome("racecar")
        )
    );
    let mut lru = LruCache::new(2);
    lru.put("a", 1);
    lru.put("b", 2);
    lru.put("c", 3);
    println!("{}", app_log!("{} holds {} items", lru.describe(), lru.len()));
    let pairs: Vec<(i32, i32)> = vec![1, 2, 3, 4].into_iter().pairs().collect();
    println!("{}", app_log!("pairs: {:?}", pairs));

    let mut calc = Calculator::default();
    calc.vars.insert("x".into(), 7.0);
    match calc.eval_str("(x + 1) * 2 ^ 3") {
        Ok(v) => println!("{}", app_log!("(x + 1) * 2 ^ 3 with x = 7 is {}", v)),
        Err(e) => println!("{}", app_log!("error: {}", e)),
    }

    match analyze("x ^ 2 - 4", 0, 4) {
        Ok(s) => println!("{}", app_log!("x^2-4 over 0..4: mean {:.2}, min {}, max {}", s.mean, s.min, s.max)),
        Err(e) => println!("{}", app_log!("error: {}", e)),
    }
    let reg: Registry<f64> = evaluate_all(&[("area", "3.14159 * x ^ 2"), ("double", "x * 2")], 2.0).expect("formulas");
    for k in reg.keys() {
        println!("{}", app_log!("{} = {:.3}", k, reg.get(k).copied().unwrap_or_default()));
    }
    println!("{}", describe_pipeline());
    let info = btmap! { "channel" => lib_common::CHANNEL, "crate" => lib_common::CRATE_VERSION };
    println!("{}", app_log!("build {:?}, table sum {}", info, lib_common::build_table_sum()));
    let semver = lib_common::version::pick_version("~1.0", &["0.9.0", "1.0.4", "1.1.0"]).expect("versions");
    println!("{}", app_log!("v{} satisfies ~1.0 from {{0.9.0, 1.0.4, 1.1.0}}: {:?}", app_version(), semver.map(|v| v.to_string())));
    let half: Rational = "1/2".parse().expect("rational");
    println!("{}", app_log!("1/3 + {} = {}, H(10) = {}", half, Rational::new(1, 3) + half, harmonic(10)));
    let graph = parse_graph("main -> advanced, utils; advanced -> math, parser; parser -> utils; utils -> common; math -> common")
        .expect("graph");
    let levels = graph.levels().map_err(AppError::from).expect("acyclic");
    println!("{}", app_log!("{} build levels: {:?}", graph.describe(), levels));
    let doc = parse_json(r#"{"tool": "distbuild", "workers": [1, 2], "cache": {"hits": 5}}"#).expect("json");
    println!("{}", app_log!("json {} ({} nodes, hits {:?})", doc, doc.node_count(), doc.pointer("cache.hits").and_then(|j| j.as_f64())));
    let root = solve("x ^ 2 - 2", 0.0, 2.0).expect("root");
    println!("{}", app_log!("x^2 = 2 at x = {:.6}; integral of x^2 over 0..3 = {:.4}", root.x, integrate("x ^ 2", 0.0, 3.0).expect("integral")));
    println!("{}", app_log!("done"));
}

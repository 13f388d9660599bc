//! main-binary: exercises every crate of the workspace.

use lib_advanced::{analyze, describe_pipeline, evaluate_all};
use lib_common::{app_log, banner, btmap, Describe, Meters, Registry};
use lib_math::{add, fibonacci, gcd, primes_up_to, Matrix};
use lib_parser::Calculator;
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
    println!("{}", app_log!("done"));
}

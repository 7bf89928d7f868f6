//! A bounded load generator for `bench/serve.sh`: N clients on keep-alive connections to a
//! loopback address, each sending R GET requests in turn over the given paths, with a session
//! cookie; prints the latency percentiles per path. Loopback only, bounded in count and time.
//!
//!   load ADDR COOKIE CLIENTS REQUESTS PATH...

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, cookie, clients, requests, paths @ ..] = args.as_slice() else {
        return Err("usage: load ADDR COOKIE CLIENTS REQUESTS PATH...".into());
    };
    let sock: std::net::SocketAddr = addr.parse()?;
    if !sock.ip().is_loopback() {
        return Err("loopback addresses only".into());
    }
    let clients: usize = clients.parse()?;
    let requests: usize = requests.parse()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let cookie = cookie.clone();
        let paths = paths.to_vec();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(sock).await?;
            stream.set_nodelay(true)?;
            let mut stream = BufReader::new(stream);
            let mut times: Vec<(usize, Duration, u16)> = Vec::with_capacity(requests);
            for i in 0..requests {
                if Instant::now() > deadline {
                    break;
                }
                let p = (c + i) % paths.len();
                let t = Instant::now();
                let req = format!(
                    "GET {} HTTP/1.1\r\nHost: {sock}\r\nCookie: idlink_session={cookie}\r\n\r\n",
                    paths[p]
                );
                stream.get_mut().write_all(req.as_bytes()).await?;
                let mut status = String::new();
                stream.read_line(&mut status).await?;
                let code: u16 = status.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    stream.read_line(&mut line).await?;
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                stream.read_exact(&mut body).await?;
                times.push((p, t.elapsed(), code));
            }
            Ok::<_, std::io::Error>(times)
        }));
    }
    let mut all: Vec<(usize, Duration, u16)> = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = started.elapsed();
    let bad = all.iter().filter(|(_, _, c)| *c != 200).count();
    println!(
        "{} requests by {clients} clients in {:.2} s ({:.0}/s), {bad} not 200",
        all.len(),
        wall.as_secs_f64(),
        all.len() as f64 / wall.as_secs_f64()
    );
    let mut worst_p99 = Duration::ZERO;
    for (i, path) in paths.iter().enumerate() {
        let mut d: Vec<Duration> = all
            .iter()
            .filter(|(p, _, _)| *p == i)
            .map(|(_, d, _)| *d)
            .collect();
        d.sort();
        if d.is_empty() {
            continue;
        }
        let pct = |q: f64| d[((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1];
        let p99 = pct(0.99);
        worst_p99 = worst_p99.max(p99);
        println!(
            "{path}: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            d.len(),
            pct(0.5).as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            d[d.len() - 1].as_secs_f64() * 1000.0
        );
    }
    println!("worst p99 {:.1} ms", worst_p99.as_secs_f64() * 1000.0);
    if bad > 0 {
        return Err(format!("{bad} responses were not 200").into());
    }
    Ok(())
}

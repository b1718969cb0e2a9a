//! The fuzz targets' properties (`fuzz/checks.rs`) run in the normal suite:
//! every input kept in `fuzz/regressions/<target>/` is replayed, and a short
//! deterministic mutation run from seeds gives stable toolchains some of the
//! fuzzers' coverage.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

type Check = fn(&[u8]);

const TARGETS: &[(&str, Check)] = &[
    ("open_cookie", checks::open_cookie),
    ("sanitise_redirect", checks::sanitise_redirect),
    ("header_hygiene", checks::header_hygiene),
    ("parse_config", checks::parse_config),
    ("http1_guard", checks::http1_guard),
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let texts: &[&str] = match target {
        "open_cookie" => &["", "AQ", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "{\"sub\":\"x\"}", "AQ-_AAAA.AAAA"],
        "sanitise_redirect" => &[
            "/",
            "/a/b?c=d",
            "//evil.example",
            "/\\evil.example",
            "https://app.example.com/x",
            "https://docs.example.com/y",
            "/%2F%2Fevil",
            "/.//evil",
            "javascript:alert(1)",
            "https://app.example.com@evil.example/",
        ],
        "header_hygiene" => &[
            "X-Forwarded-User: a\nConnection: x-forwarded-email\nX-Forwarded-Email: b",
            "x_auth_request_user: a\nCookie: _portcullis=1; app=2; _portcullis_flow_x=3",
            "Authorization: Bearer x\nTE: trailers\nKeep-Alive: 1\nForwarded: for=x",
        ],
        "parse_config" => &[
            "",
            "public_url = \"https://a.example\"\nupstream = \"http://127.0.0.1:1\"\n[oidc]\nissuer = \"https://i.example\"\nclient_id = \"c\"\n[session]\nsecret = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
            "[server]\nmax_header_bytes = 0\n",
            "[tls]\ncert_file = \"/nonexistent\"\n",
        ],
        // The first four bytes choose the piece sizes.
        "http1_guard" => &[
            "\x05\x01\x11\x02GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "\x03\x07\x01\x3fPOST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
            "\x02\x02\x09\x01POST /b HTTP/1.1\r\nContent-Length: 20\r\n\r\nGET / HTTP/1.1\n\n\r\n\r\nGET / HTTP/1.1\nContent-Length: 0\nTransfer-Encoding: x\n\n",
            "\x18\x01\x01\x01PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ],
        _ => &[],
    };
    texts.iter().map(|text| text.as_bytes().to_vec()).collect()
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound.max(1)).unwrap()).unwrap()
    }

    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        const INTERESTING: &[u8] = b"/\\%@:.?#\r\n\t \0\x7f\xff=;,_-AZaz09";
        let mut output = input.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(output.len() + 1);
            match self.below(4) {
                0 if !output.is_empty() => {
                    let at = at.min(output.len() - 1);
                    output[at] = INTERESTING[self.below(INTERESTING.len())];
                }
                1 => output.insert(at, INTERESTING[self.below(INTERESTING.len())]),
                2 if at < output.len() => {
                    output.remove(at);
                }
                _ => {
                    let byte = u8::try_from(self.next() & 0xff).unwrap();
                    output.insert(at, byte);
                }
            }
        }
        output
    }
}

#[test]
fn kept_crash_inputs_are_replayed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for (target, check) in TARGETS {
        let dir = root.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() && path.file_name().is_some_and(|name| name != ".gitkeep") {
                check(&std::fs::read(&path).unwrap());
            }
        }
    }
}

#[test]
fn seeds_and_their_mutations_hold_the_properties() {
    for (target, check) in TARGETS {
        let seeds = seeds(target);
        let mut mutator = Mutator(0x5eed_0000_0000_0001);
        for seed in &seeds {
            check(seed);
        }
        for _ in 0..1500 {
            let seed = &seeds[mutator.below(seeds.len())];
            check(&mutator.mutate(seed));
        }
    }
}

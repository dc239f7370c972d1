//! The config file parser and the control-socket request decoder, fed seeded random and mutated inputs: none may
//! panic, and what parses is valid and round-trips. (cargo-fuzz targets for both are in `fuzz/`.)

use pkgseed_engine::control::ControlRequest;
use pkgseed_engine::Config;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seeds: &[&str], alphabet: &[u8]) -> String {
    let mut v = seeds[rng.below(seeds.len())].as_bytes().to_vec();
    for _ in 0..1 + rng.below(6) {
        match rng.below(4) {
            0 if !v.is_empty() => {
                let at = rng.below(v.len());
                v[at] = alphabet[rng.below(alphabet.len())];
            }
            1 if !v.is_empty() => v.truncate(rng.below(v.len())),
            2 => {
                let at = rng.below(v.len() + 1);
                v.insert(at, alphabet[rng.below(alphabet.len())]);
            }
            _ => {
                let other = seeds[rng.below(seeds.len())].as_bytes();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, other[rng.below(other.len() + 1)..].iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&v).into_owned()
}

#[test]
fn config_parse_never_panics_and_what_parses_is_valid() {
    let seeds = [
        "network = \"local\"\ncid_profile = \"unixfs-v0-2015\"\nlisten_addrs = [\"/ip4/127.0.0.1/tcp/0\"]\n",
        "[origins]\npublic = [\"a-1\"]\nprivate = [\"b-2\"]\n[ecosystems.cargo]\nenabled = false\n",
        "[limits]\nupload_bytes_per_sec = 5\nmonthly_upload_bytes = 9\n[limits.alt_schedule]\nenabled = true\ndays = [\"sat\"]\nstart_minute_of_day = 1\n",
        "version = 1\n",
    ];
    let mut rng = Rng(7);
    let mut parsed = 0;
    for i in 0..4000 {
        let text = if i % 5 == 0 {
            (0..rng.below(200))
                .map(|_| (rng.next() as u8) as char)
                .collect()
        } else {
            mutate(&mut rng, &seeds, b"[]=\"'\n.#0123456789abcxyz_ -")
        };
        if let Ok(config) = Config::parse(&text) {
            parsed += 1;
            assert!(
                config.validate().is_ok(),
                "accepted an invalid config: {text:?}"
            );
        }
    }
    assert!(
        parsed > 0,
        "no mutated config parsed: the mutations are too destructive to test anything"
    );
}

#[test]
fn control_request_decode_never_panics_and_round_trips() {
    let seeds = [
        r#"{"cmd":"status"}"#,
        r#"{"cmd":"ls"}"#,
        r#"{"cmd":"pause","extra":[1,2,{"a":null}]}"#,
        r#"{"cmd":"config"}"#,
    ];
    let mut rng = Rng(8);
    for _ in 0..4000 {
        let line = mutate(&mut rng, &seeds, b"{}[]\":,\\ucmdstaus0919.e-+nul");
        if let Ok(request) = serde_json::from_str::<ControlRequest>(&line) {
            let again = serde_json::to_string(&request).unwrap();
            assert_eq!(
                serde_json::from_str::<ControlRequest>(&again).unwrap(),
                request
            );
        }
    }
}

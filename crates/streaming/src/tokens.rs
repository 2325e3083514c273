//! One-time tokens: each URL that Exec, Attach or PortForward returns names a token bound to the
//! request it was made for. A token is used once (consumed on the first request that names it),
//! expires after its time to live, and is 128 random bits: unguessable, unlike a counter.
//! At most [`MAX_IN_FLIGHT`] are held; expired ones are dropped on every insert.

use crate::Request;
use base64::Engine;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_IN_FLIGHT: usize = 1000;

pub(crate) struct Tokens {
    ttl: Duration,
    held: Mutex<HashMap<String, (Request, Instant)>>,
}

impl Tokens {
    pub(crate) fn new(ttl: Duration) -> Tokens {
        Tokens { ttl, held: Mutex::new(HashMap::new()) }
    }

    /// A fresh token for `request`; None when [`MAX_IN_FLIGHT`] unexpired ones are held.
    pub(crate) fn insert(&self, request: Request) -> Option<String> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        held.retain(|_, (_, expires)| *expires > now);
        if held.len() >= MAX_IN_FLIGHT {
            return None;
        }
        loop {
            let mut raw = [0u8; 16];
            getrandom::fill(&mut raw).expect("the kernel's random source answers");
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            if !held.contains_key(&token) {
                held.insert(token.clone(), (request, now + self.ttl));
                return Some(token);
            }
        }
    }

    /// The request `token` was made for, if it is held and unexpired; either way it is gone.
    pub(crate) fn consume(&self, token: &str) -> Option<Request> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let (request, expires) = held.remove(token)?;
        (expires > Instant::now()).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortForwardRequest;

    fn request() -> Request {
        Request::PortForward(PortForwardRequest { pod_id: "p".into(), ports: vec![80] })
    }

    #[test]
    fn a_token_is_used_once_and_expires() {
        let tokens = Tokens::new(Duration::from_secs(60));
        let token = tokens.insert(request()).unwrap();
        assert_eq!(token.len(), 22);
        assert_eq!(tokens.consume(&token), Some(request()));
        assert_eq!(tokens.consume(&token), None, "reused");
        assert_eq!(tokens.consume("made-up"), None);

        let short = Tokens::new(Duration::from_millis(1));
        let token = short.insert(request()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.consume(&token), None, "expired");
    }

    #[test]
    fn tokens_in_flight_are_bounded() {
        let tokens = Tokens::new(Duration::from_secs(60));
        for _ in 0..MAX_IN_FLIGHT {
            tokens.insert(request()).unwrap();
        }
        assert_eq!(tokens.insert(request()), None);
    }
}

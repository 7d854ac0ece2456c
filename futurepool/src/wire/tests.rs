//! Round trips, and a bounded, seeded fuzz of the decoder (the long-running one is
//! `fuzz/fuzz_targets/frame_decoder.rs`).

use super::*;

fn sample_messages() -> (Vec<ToWorker<'static>>, Vec<FromWorker<'static>>) {
    let call = Call {
        function: 7,
        arg: Bytes(b"\x01\x02\x03"),
    };
    let to = vec![
        ToWorker::Hello(Hello {
            magic: MAGIC,
            protocol: PROTOCOL_VERSION,
            build_id: 0xfeed_beef,
            initializer: Some(call),
            max_tasks: Some(3),
            max_frame: 1 << 20,
        }),
        ToWorker::Run(call),
        ToWorker::RunChunk {
            function: 2,
            args: vec![Bytes(b""), Bytes(b"abc")],
        },
        ToWorker::RunChunkEach {
            function: 5,
            args: vec![Bytes(b"de"), Bytes(b"")],
        },
    ];
    let from = vec![
        FromWorker::Accepted,
        FromWorker::Ready {
            pid: 42,
            initializer: None,
        },
        FromWorker::Refused {
            reason: "other build".into(),
        },
        FromWorker::Ready {
            pid: 43,
            initializer: Some(Outcome::Panicked {
                message: "no config".into(),
                location: Some("src/main.rs:1:1".into()),
            }),
        },
        FromWorker::Done(Outcome::Returned(Bytes(&[9; 300]))),
        FromWorker::ChunkDone(vec![
            Outcome::BadArgument("x".into()),
            Outcome::Unserializable("y".into()),
            Outcome::UnknownFunction("z".into()),
        ]),
        FromWorker::ItemDone(Outcome::Returned(Bytes(b"item"))),
        FromWorker::ItemDone(Outcome::Panicked {
            message: "item panicked".into(),
            location: None,
        }),
        FromWorker::Progress(ProgressReport {
            item: None,
            done: 3,
            total: u64::MAX,
        }),
        FromWorker::Progress(ProgressReport {
            item: Some(7),
            done: 1,
            total: 10,
        }),
    ];
    (to, from)
}

fn valid_stream() -> Vec<u8> {
    let (to, from) = sample_messages();
    let mut stream = Vec::new();
    for m in &to {
        encode_into(&mut stream, m, DEFAULT_MAX_FRAME).unwrap();
    }
    for m in &from {
        encode_into(&mut stream, m, DEFAULT_MAX_FRAME).unwrap();
    }
    stream
}

#[test]
fn every_message_round_trips_through_a_batched_stream() {
    let (to, from) = sample_messages();
    let stream = valid_stream();
    let mut reader = &stream[..];
    let mut body = Vec::new();
    for expected in &to {
        assert!(read_into(&mut reader, &mut body, DEFAULT_MAX_FRAME).unwrap());
        assert_eq!(
            &postcard::from_bytes::<ToWorker<'_>>(&body).unwrap(),
            expected
        );
    }
    for expected in &from {
        assert!(read_into(&mut reader, &mut body, DEFAULT_MAX_FRAME).unwrap());
        assert_eq!(
            &postcard::from_bytes::<FromWorker<'_>>(&body).unwrap(),
            expected
        );
    }
    assert!(
        !read_into(&mut reader, &mut body, DEFAULT_MAX_FRAME).unwrap(),
        "clean end"
    );
}

#[test]
fn progress_frames_are_told_from_answers_by_their_first_byte() {
    let (_, from) = sample_messages();
    for message in &from {
        let mut bytes = Vec::new();
        encode_into(&mut bytes, message, DEFAULT_MAX_FRAME).unwrap();
        let body = &bytes[super::frame::HEADER_LEN..];
        let expected = match message {
            FromWorker::Progress(report) => Some(*report),
            _ => None,
        };
        assert_eq!(FromWorker::progress_in(body), expected, "{message:?}");
    }
    let mut small = Vec::new();
    let progress = FromWorker::Progress(ProgressReport {
        item: None,
        done: 100_000,
        total: 100_000,
    });
    encode_into(&mut small, &progress, DEFAULT_MAX_FRAME).unwrap();
    assert!(
        small.len() <= 4 + 1 + 1 + 3 + 3,
        "a tiny frame: {} bytes",
        small.len()
    );
    let mut largest = Vec::new();
    let widest = FromWorker::Progress(ProgressReport {
        item: Some(u32::MAX),
        done: u64::MAX,
        total: u64::MAX,
    });
    encode_into(&mut largest, &widest, DEFAULT_MAX_FRAME).unwrap();
    assert_eq!(
        largest.len(),
        ProgressReport::MAX_FRAME,
        "the bound a worker relies on for one write"
    );
    assert_eq!(
        FromWorker::progress_in(&[6, 0xff]),
        None,
        "truncated: not progress"
    );
}

#[test]
fn oversized_frames_are_refused_both_ways() {
    let mut out = vec![1, 2, 3];
    let big = FromWorker::Done(Outcome::Returned(Bytes(&[0; 100])));
    assert!(matches!(
        encode_into(&mut out, &big, 50),
        Err(FrameError::TooLarge { max: 50, .. })
    ));
    assert_eq!(out, [1, 2, 3], "a refused frame leaves the batch untouched");

    let header = 1_000_000u32.to_le_bytes();
    let mut body = Vec::new();
    assert!(matches!(
        read_into(&mut &header[..], &mut body, 1000),
        Err(FrameError::TooLarge {
            len: 1_000_000,
            max: 1000
        })
    ));
}

#[test]
fn a_stream_cut_anywhere_is_truncated_not_a_panic() {
    let stream = valid_stream();
    for cut in 1..stream.len() {
        let mut reader = &stream[..cut];
        let mut body = Vec::new();
        let mut frames = 0;
        let end = loop {
            match read_into(&mut reader, &mut body, DEFAULT_MAX_FRAME) {
                Ok(true) => frames += 1,
                other => break other,
            }
        };
        // Either the cut fell on a frame boundary (clean end) or inside a frame.
        match end {
            Ok(false) => assert!(frames > 0),
            Err(FrameError::Truncated) => {}
            other => panic!("cut at {cut}: unexpected {other:?}"),
        }
    }
}

/// xorshift64*: a tiny seeded generator, so the fuzz run is reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn seeded_fuzz_of_the_decoder_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let valid = valid_stream();
    let mut decoded_some = false;
    for round in 0..20_000 {
        let data: Vec<u8> = if round % 2 == 0 {
            // Pure noise, with small lengths likely so bodies get decoded.
            let len = rng.below(64);
            (0..len)
                .map(|i| {
                    if i % 5 < 2 {
                        (rng.next() % 8) as u8
                    } else {
                        rng.next() as u8
                    }
                })
                .collect()
        } else {
            // A valid stream with a few bytes flipped, inserted or removed.
            let mut data = valid.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(data.len());
                match rng.below(3) {
                    0 => data[at] = rng.next() as u8,
                    1 => data.insert(at, rng.next() as u8),
                    _ => {
                        data.remove(at);
                    }
                }
            }
            data
        };
        // A small maximum keeps lying headers cheap, as a real pool's limit does.
        decode_everything(&data, 1 << 16);
        let mut reader = &data[..];
        let mut body = Vec::new();
        if let Ok(true) = read_into(&mut reader, &mut body, 1 << 16) {
            decoded_some |= postcard::from_bytes::<FromWorker<'_>>(&body).is_ok()
                || postcard::from_bytes::<ToWorker<'_>>(&body).is_ok();
        }
    }
    assert!(decoded_some, "the mutations should sometimes still decode");
}

//! Unit tests of `preamble.rs`.

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn origins_round_trip_in_the_standard_form() {
    let (s, d) = (addr("127.1.2.3:50123"), addr("127.1.0.1:8445"));
    let header = encode_origin(Some(s), Some(d));
    assert_eq!(&header[..12], v2::PROTOCOL_PREFIX);
    assert_eq!(&header[12..16], &[0x21, 0x11, 0, 12]);
    assert_eq!(&header[16..20], &[127, 1, 2, 3]);
    assert_eq!(
        decode_origin(&header),
        Ok(Origin::Proxied {
            source: s,
            destination: d
        })
    );
    let (s6, d6) = (addr("[fd00::5]:1"), addr("[fd00::1]:445"));
    let header = encode_origin(Some(s6), Some(d6));
    assert_eq!(header.len(), 16 + 36);
    assert_eq!(
        decode_origin(&header),
        Ok(Origin::Proxied {
            source: s6,
            destination: d6
        })
    );
    for local in [encode_origin(None, None), encode_origin(Some(s), Some(d6))] {
        assert_eq!(&local[12..16], &[0x20, 0x00, 0, 0]);
        assert_eq!(decode_origin(&local), Ok(Origin::Local));
    }
}

#[test]
fn intercepted_origins_carry_the_original_destination_in_a_custom_tlv() {
    let (s, d) = (addr("127.1.10.11:50123"), addr("127.2.20.50:445"));
    let header = encode_intercepted(s, d);
    assert_eq!(&header[12..14], &[0x21, 0x11]);
    assert_eq!(&header[14..16], &(12u16 + 4).to_be_bytes());
    assert_eq!(&header[28..], &[TLV_ORIGINAL_DESTINATION, 0, 1, 1]);
    let origin = decode_origin(&header).unwrap();
    assert_eq!(
        origin,
        Origin::Intercepted {
            source: s,
            destination: d
        }
    );
    assert_eq!(origin.original_destination(), Some(d));
    assert_eq!(origin.source(), Some(s));
    let v6 = encode_intercepted(addr("[fd01::11]:1"), addr("[fd02::50]:445"));
    assert_eq!(
        decode_origin(&v6).unwrap().original_destination(),
        Some(addr("[fd02::50]:445"))
    );
    // A plain tunnel's destination is only its listener: not an original one.
    let plain = decode_origin(&encode_origin(Some(s), Some(d))).unwrap();
    assert_eq!(plain.original_destination(), None);
    assert_eq!(
        decode_origin(&encode_intercepted(s, addr("[fd02::50]:445"))),
        Ok(Origin::Local),
        "mixed families"
    );
    let mut future = header.clone();
    let last = future.len() - 1;
    future[last] = 2;
    assert!(decode_origin(&future).is_err(), "unknown TLV version");
}

#[test]
fn bad_origins_are_refused() {
    let good = encode_origin(Some(addr("127.0.0.1:1")), Some(addr("127.0.0.2:2")));
    assert!(decode_origin(b"GET / HTTP/1.1\r\n").is_err());
    assert!(decode_origin(&good[..good.len() - 1]).is_err(), "truncated");
    let mut long = good.clone();
    long.push(0);
    assert!(decode_origin(&long).is_err(), "trailing byte");
    let mut v1 = good.clone();
    v1[12] = 0x11;
    assert!(decode_origin(&v1).is_err(), "version 1 in the v2 form");
    let mut huge = good[..16].to_vec();
    huge[14..16].copy_from_slice(&1000u16.to_be_bytes());
    let fixed: [u8; 16] = huge.try_into().unwrap();
    assert_eq!(proxy_length(&fixed), Err(PreambleError::ProxyTooLong(1016)));
}

#[tokio::test]
async fn reading_stops_exactly_at_the_end_of_each_message() {
    let header = encode_origin(Some(addr("127.0.0.1:1")), Some(addr("127.0.0.2:2")));
    let status = encode_status("export_unreachable", "export target x: refused");
    let mut wire = header.clone();
    wire.extend_from_slice(&status);
    wire.extend_from_slice(b"client bytes");
    let mut r = wire.as_slice();
    assert!(matches!(
        read_origin(&mut r).await,
        Ok(Origin::Proxied { .. })
    ));
    let got = read_status(&mut r).await.unwrap();
    assert_eq!(got.outcome, "export_unreachable");
    assert_eq!(got.detail, "export target x: refused");
    assert_eq!(r, b"client bytes");
    let ok = encode_status(OK, "");
    assert_eq!(ok, b"PGS1\x02ok\x00\x00");
    let mut r = ok.as_slice();
    assert_eq!(read_status(&mut r).await.unwrap().outcome, OK);
}

#[test]
fn status_frames_are_bounded_and_partial_input_waits() {
    let long = "é".repeat(MAX_DETAIL);
    let frame = encode_status("not_paired", &long);
    let (status, used) = decode_status(&frame).unwrap().unwrap();
    assert_eq!(used, frame.len());
    assert!(status.detail.len() <= MAX_DETAIL);
    for cut in 0..frame.len() {
        assert_eq!(decode_status(&frame[..cut]), Ok(None), "cut at {cut}");
    }
    assert!(decode_status(b"PGS2").is_err());
    assert!(decode_status(b"PGS1\x00").is_err());
    assert!(decode_status(b"PGS1\x02OK").is_err());
    assert!(decode_status(b"PGS1\x02ok\xff\xff").is_err());
    assert_eq!(&encode_status("Bad Reason", "")[5..21], b"handshake_failed");
}

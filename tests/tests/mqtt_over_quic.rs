//! MQTT over QUIC: a quinn client opens a bidirectional stream (ALPN "mqtt"), speaks MQTT 3.1.1
//! on it (packets encoded by rumqttc's mqttbytes), and the QoS 1 publish lands in the log where a
//! librdkafka consumer reads it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use headwater_tests::InProcess;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The broker's certificate is self-signed and made at startup; the test trusts it blindly.
#[derive(Debug)]
struct TrustAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_endpoint() -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnything(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"mqtt".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

async fn read_packet(recv: &mut quinn::RecvStream, buf: &mut BytesMut) -> Packet {
    loop {
        match Packet::read(buf, 1 << 20) {
            Ok(p) => return p,
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                let mut chunk = [0u8; 1024];
                let n = tokio::time::timeout(Duration::from_secs(10), recv.read(&mut chunk))
                    .await
                    .expect("answer in time")
                    .expect("read")
                    .expect("stream open");
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => panic!("bad packet from broker: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_publish_over_quic_lands_in_the_log() {
    let hw = InProcess::start().await;
    let addr = hw.broker.addrs.quic.expect("quic listener");
    let endpoint = client_endpoint();
    let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();

    let mut out = BytesMut::new();
    Connect::new("quic-gateway").write(&mut out).unwrap();
    let mut publish = Publish::new("yard/gate/state", QoS::AtLeastOnce, "open");
    publish.pkid = 7;
    publish.write(&mut out).unwrap();
    send.write_all(&out).await.unwrap();

    let mut buf = BytesMut::new();
    match read_packet(&mut recv, &mut buf).await {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.code, rumqttc::mqttbytes::v4::ConnectReturnCode::Success)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    match read_packet(&mut recv, &mut buf).await {
        Packet::PubAck(ack) => assert_eq!(ack.pkid, 7),
        other => panic!("expected PUBACK, got {other:?}"),
    }

    let kafka = hw.kafka();
    let records =
        tokio::task::spawn_blocking(move || consume(&kafka, "yard", 1, 1, Duration::from_secs(20)))
            .await
            .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value_str(), "open");
    assert_eq!(records[0].key.as_deref(), Some(&b"yard/gate/state"[..]));
    conn.close(0u32.into(), b"done");
    hw.broker.stop().await;
}

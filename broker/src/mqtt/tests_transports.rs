//! MQTT over TLS, WebSocket and WebSocket over TLS with rumqttc as the client: QoS 1 across
//! transports, mutual TLS and the certificate identity, and malformed upgrades that must close
//! only their own connection.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_sink::Sink;
use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::QoS;
use rumqttc::{AsyncClient, Event, MqttOptions, TlsConfiguration, Transport as ClientTransport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::codec::Codec;
use super::transport::Transport;
use super::websocket::WsStream;
use super::{run_transport, MqttContext};
use crate::config::{MqttSection, TlsFiles};
use crate::ingest::Ingest;
use crate::log::{Log, LogOptions};
use crate::plugin::IngestPlugins;

const WAIT: Duration = Duration::from_secs(10);

/// A test CA, a server certificate for 127.0.0.1 and a client certificate with CN `sensor-7`,
/// all signed by the CA; plus a client certificate from another CA.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client: (String, String),
    stranger: (String, String),
}

fn leaf(
    cn: &str,
    sans: Vec<String>,
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(sans).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("Headwater test CA");
        let server = leaf(
            "headwater",
            vec!["127.0.0.1".into(), "localhost".into()],
            &ca,
        );
        let client = leaf("sensor-7", vec![], &ca);
        let stranger = leaf("intruder", vec![], &ca_other());
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), &server.0).unwrap();
        std::fs::write(dir.path().join("server.key"), &server.1).unwrap();
        Pki {
            dir,
            ca_pem: ca.pem(),
            client,
            stranger,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self, mutual: bool) -> TlsFiles {
        TlsFiles {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: mutual.then(|| self.path("ca.pem")),
        }
    }

    /// A rustls client trusting the test CA, optionally presenting `cert`.
    fn client_tls(&self, cert: Option<&(String, String)>) -> TlsConfiguration {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        TlsConfiguration::Rustls(Arc::new(config))
    }
}

fn ca_other() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    ca("Someone else's CA")
}

/// A broker serving one listener per requested transport.
struct Broker {
    ctx: MqttContext,
    tls: SocketAddr,
    ws: SocketAddr,
    wss: SocketAddr,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(pki: &Pki, mutual: bool) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&LogOptions::for_tests(dir.path(), 64 * 1024 * 1024)).unwrap();
    let ingest = Ingest::new(log, Arc::new(IngestPlugins::default()));
    let ctx = MqttContext::new(ingest, &MqttSection::default()).unwrap();
    let acceptor = crate::tls::acceptor(&pki.files(mutual)).unwrap();
    let shutdown = CancellationToken::new();
    let mut addrs = Vec::new();
    for transport in [
        Transport::Tls(acceptor.clone()),
        Transport::Ws,
        Transport::Wss(acceptor),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        tokio::spawn(run_transport(
            listener,
            transport,
            ctx.clone(),
            shutdown.clone(),
        ));
    }
    Broker {
        ctx,
        tls: addrs[0],
        ws: addrs[1],
        wss: addrs[2],
        shutdown,
        _dir: dir,
    }
}

struct Client {
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, String>>,
}

fn options(id: &str, host: &str, port: u16, transport: ClientTransport) -> MqttOptions {
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    // rumqttc caps packets at 10 KiB by default; the broker allows 1 MiB.
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_transport(transport);
    o
}

fn tls_options(b: &Broker, id: &str, tls: TlsConfiguration) -> MqttOptions {
    options(id, "127.0.0.1", b.tls.port(), ClientTransport::Tls(tls))
}

fn ws_options(b: &Broker, id: &str) -> MqttOptions {
    let url = format!("ws://127.0.0.1:{}/mqtt", b.ws.port());
    options(id, &url, b.ws.port(), ClientTransport::Ws)
}

fn wss_options(b: &Broker, id: &str, tls: TlsConfiguration) -> MqttOptions {
    let url = format!("wss://127.0.0.1:{}/mqtt", b.wss.port());
    options(id, &url, b.wss.port(), ClientTransport::Wss(tls))
}

/// Starts a client; its event loop stops at the first error.
fn spawn(options: MqttOptions) -> Client {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (tx, events) = mpsc::channel(1000);
    tokio::spawn(async move {
        loop {
            let event = eventloop.poll().await.map_err(|e| e.to_string());
            let failed = event.is_err();
            if tx.send(event).await.is_err() || failed {
                break;
            }
        }
    });
    Client { client, events }
}

impl Client {
    async fn connected(options: MqttOptions) -> Client {
        let mut c = spawn(options);
        c.expect(|p| matches!(p, Packet::ConnAck(_))).await;
        c
    }

    /// The next event: a packet, or the error that ended the event loop.
    async fn next(&mut self) -> Result<Packet, String> {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(Ok(Event::Incoming(p))) => return Ok(p),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Err("event loop ended".into()),
                }
            }
        })
        .await;
        found.expect("timed out waiting for the client")
    }

    async fn expect(&mut self, want: impl Fn(&Packet) -> bool) -> Packet {
        loop {
            match self.next().await {
                Ok(p) if want(&p) => return p,
                Ok(_) => {}
                Err(e) => panic!("client failed: {e}"),
            }
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        self.expect(|p| matches!(p, Packet::SubAck(_))).await;
    }

    async fn publish_qos1(&mut self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
        self.expect(|p| matches!(p, Packet::PubAck(_))).await;
    }

    async fn next_payload(&mut self) -> String {
        match self.expect(|p| matches!(p, Packet::Publish(_))).await {
            Packet::Publish(p) => {
                assert_eq!(p.qos, QoS::AtLeastOnce);
                String::from_utf8(p.payload.to_vec()).unwrap()
            }
            _ => unreachable!(),
        }
    }

    /// The connection is refused: the event loop fails before any CONNACK.
    async fn refused(mut self) -> String {
        match self.next().await {
            Err(e) => e,
            Ok(p) => panic!("expected a refused connection, got {p:?}"),
        }
    }
}

#[tokio::test]
async fn tls_ws_and_wss_clients_exchange_qos1_publishes() {
    let pki = Pki::new();
    let b = start(&pki, false).await;
    let mut sub = Client::connected(wss_options(&b, "sub", pki.client_tls(None))).await;
    sub.subscribe("plant/#").await;
    let mut over_tls = Client::connected(tls_options(&b, "tls-pub", pki.client_tls(None))).await;
    let mut over_ws = Client::connected(ws_options(&b, "ws-pub")).await;

    over_tls.publish_qos1("plant/a", "via tls").await;
    assert_eq!(sub.next_payload().await, "via tls");
    over_ws.publish_qos1("plant/b", "via ws").await;
    assert_eq!(sub.next_payload().await, "via ws");
    // A payload larger than a frame's worth of reads still arrives whole.
    let big = "x".repeat(200 * 1024);
    over_ws.publish_qos1("plant/big", &big).await;
    assert_eq!(sub.next_payload().await, big);

    assert_eq!(b.ctx.client_cert_identity("tls-pub"), Some(None));
    assert_eq!(b.ctx.client_cert_identity("ws-pub"), Some(None));
    assert_eq!(b.ctx.client_cert_identity("nobody"), None);
}

#[tokio::test]
async fn mutual_tls_requires_a_certificate_from_the_ca_and_names_the_client_by_its_cn() {
    let pki = Pki::new();
    let b = start(&pki, true).await;

    let anonymous = spawn(tls_options(&b, "anon", pki.client_tls(None)));
    let error = anonymous.refused().await.to_lowercase();
    assert!(
        error.contains("tls") || error.contains("certificate"),
        "{error}"
    );
    let stranger = spawn(tls_options(&b, "x", pki.client_tls(Some(&pki.stranger))));
    stranger.refused().await;
    let anonymous_ws = spawn(wss_options(&b, "anon-ws", pki.client_tls(None)));
    anonymous_ws.refused().await;
    assert_eq!(b.ctx.connected_clients(), 0);

    let mut device =
        Client::connected(tls_options(&b, "dev-1", pki.client_tls(Some(&pki.client)))).await;
    assert_eq!(
        b.ctx.client_cert_identity("dev-1"),
        Some(Some("sensor-7".to_string()))
    );
    let mut web =
        Client::connected(wss_options(&b, "dev-2", pki.client_tls(Some(&pki.client)))).await;
    assert_eq!(
        b.ctx.client_cert_identity("dev-2"),
        Some(Some("sensor-7".to_string()))
    );
    web.subscribe("cmd/#").await;
    device.publish_qos1("cmd/go", "go").await;
    assert_eq!(web.next_payload().await, "go");
}

/// Reads until the broker closes the connection (EOF or reset), within [`WAIT`].
async fn closed_by_broker(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the broker did not close the connection");
}

async fn ws_client(
    addr: SocketAddr,
    protocol: &str,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (ws, response) = tokio_tungstenite::client_async(request, tcp).await?;
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes()),
        Some(&b"mqtt"[..])
    );
    Ok(ws)
}

async fn send(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>, message: Message) {
    poll_fn(|cx| Pin::new(&mut *ws).poll_ready(cx))
        .await
        .unwrap();
    Pin::new(&mut *ws).start_send(message).unwrap();
    poll_fn(|cx| Pin::new(&mut *ws).poll_flush(cx))
        .await
        .unwrap();
}

#[tokio::test]
async fn malformed_upgrades_and_text_frames_close_only_their_connection() {
    let pki = Pki::new();
    let b = start(&pki, false).await;
    let mut sub = Client::connected(ws_options(&b, "sub")).await;
    sub.subscribe("t/#").await;

    for addr in [b.tls, b.ws, b.wss] {
        let mut garbage = TcpStream::connect(addr).await.unwrap();
        let _ = garbage
            .write_all(b"\xff\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n\x10\x00")
            .await;
        closed_by_broker(&mut garbage).await;
    }
    // Plain MQTT on the WebSocket port is not an HTTP upgrade.
    let mut mqtt = TcpStream::connect(b.ws).await.unwrap();
    let mut connect = bytes::BytesMut::new();
    let packet = Packet::Connect(rumqttc::mqttbytes::v4::Connect::new("raw"));
    Codec::new(1 << 20).encode(&packet, &mut connect).unwrap();
    let _ = mqtt.write_all(&connect).await;
    closed_by_broker(&mut mqtt).await;

    // Only other subprotocols offered: refused at the upgrade.
    assert!(ws_client(b.ws, "chat, superchat").await.is_err());

    // A text frame after a good CONNECT ends that connection.
    let ws = ws_client(b.ws, "mqtt").await.unwrap();
    let mut raw = WsStream::new(ws);
    raw.write_all(&connect).await.unwrap();
    raw.flush().await.unwrap();
    let mut connack = [0u8; 4];
    raw.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    assert_eq!(b.ctx.client_cert_identity("raw"), Some(None));
    let mut ws = ws_client(b.ws, "mqtt").await.unwrap();
    send(&mut ws, Message::Binary(connect.clone().freeze())).await;
    send(&mut ws, Message::Text("{\"hello\": 1}".into())).await;
    let mut raw2 = WsStream::new(ws);
    let mut rest = Vec::new();
    let end = tokio::time::timeout(WAIT, raw2.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the broker did not close after a text frame");
    assert!(
        rest.starts_with(&[0x20, 0x02]),
        "CONNACK before the close: {rest:?}"
    );

    let mut p = Client::connected(tls_options(&b, "pub", pki.client_tls(None))).await;
    p.publish_qos1("t/ok", "still serving").await;
    assert_eq!(sub.next_payload().await, "still serving");
    drop(raw);
}

#[tokio::test]
async fn tls_listeners_without_mqtt_tls_stop_the_broker_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let off = crate::config::Listen::Off;
    let any = crate::config::Listen::At("127.0.0.1:0".parse().unwrap());
    config.listeners.mqtt = off.clone();
    config.listeners.kafka = off.clone();
    config.listeners.quic = off.clone();
    config.listeners.http = off;
    for wss in [false, true] {
        let mut c = config.clone();
        if wss {
            c.listeners.mqtt_wss = any.clone();
        } else {
            c.listeners.mqtt_tls = any.clone();
        }
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("[mqtt.tls]"), "{err}");
        let err = crate::server::Broker::start(c)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("[mqtt.tls]"), "{err}");
    }
    // The plaintext WebSocket listener needs no certificate.
    config.listeners.mqtt_ws = any;
    config.validate().unwrap();
    let broker = crate::server::Broker::start(config).await.unwrap();
    assert!(broker.addrs.mqtt_ws.is_some());
    assert!(broker.addrs.mqtt_tls.is_none());
    broker.stop().await;
}

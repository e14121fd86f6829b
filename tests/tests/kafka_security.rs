//! Kafka listener security with real clients: SASL PLAIN over plaintext (the rdkafka crate, built
//! without TLS), TLS + SCRAM-SHA-512 (kcat), TLS + SCRAM-SHA-256 and PLAIN (kafka-python and
//! confluent-kafka); clients without credentials get nothing; silent connections are closed
//! after `kafka.idle_timeout_ms`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use headwater::config::{KafkaSasl, KafkaTls};
use headwater::kafka::sasl::{credentials, Mechanism};
use headwater_tests::{python_kafka_clients, system_client, InProcess};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// alice's entry holds SCRAM keys only (as `headwater credentials add` writes); bob's a clear
/// password (the quick-setup form).
const ALICE: (&str, &str) = ("alice", "alice-secret");
const BOB: (&str, &str) = ("bob", "bob-secret");

/// Files the secured broker reads, and the CA file clients trust.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("self-signed certificate");
        std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("key.pem"),
            certified.signing_key.serialize_pem(),
        )
        .unwrap();
        let users = dir.path().join("users.toml");
        credentials::add_user(&users, ALICE.0, ALICE.1, 4096).expect("add alice");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&users)
            .unwrap();
        writeln!(file, "\n[users.{}]\npassword = \"{}\"", BOB.0, BOB.1).unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> String {
        self.path("cert.pem").display().to_string()
    }

    fn tls(&self) -> KafkaTls {
        KafkaTls {
            cert: self.path("cert.pem"),
            key: self.path("key.pem"),
            client_ca: None,
        }
    }

    fn sasl(&self, mechanisms: &[Mechanism]) -> KafkaSasl {
        KafkaSasl {
            mechanisms: mechanisms.to_vec(),
            credentials: self.path("users.toml"),
        }
    }
}

async fn secured(files: &Files, tls: bool, mechanisms: &[Mechanism]) -> InProcess {
    let tls = tls.then(|| files.tls());
    let sasl = files.sasl(mechanisms);
    InProcess::start_with(move |config| {
        config.kafka.tls = tls;
        config.kafka.sasl = Some(sasl);
        config
            .validate()
            .expect("security config validates at load time");
    })
    .await
}

fn sasl_plain(user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "SASL_PLAINTEXT".into()),
        ("sasl.mechanism", "PLAIN".into()),
        ("sasl.username", user.into()),
        ("sasl.password", password.into()),
    ]
}

fn as_refs<'a>(extra: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    extra.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Reads partition 0 of `topic` from the beginning with extra client settings.
fn consume_with(
    bootstrap: &str,
    extra: &[(&'static str, String)],
    topic: &str,
    want: usize,
) -> Vec<String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "security-tests")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        config.set(*k, v);
    }
    let consumer: BaseConsumer = config.create().expect("rdkafka consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into())
            }
            Some(Err(e)) => eprintln!("consumer error (retrying): {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_sasl_plain_right_password_works_wrong_one_does_not() {
    let files = Files::new();
    let hw = secured(&files, false, &[Mechanism::Plain]).await;
    let kafka = hw.kafka();
    for (user, password) in [ALICE, BOB] {
        let extra = sasl_plain(user, password);
        let producer = producer(&kafka, &as_refs(&extra));
        let topic = format!("plain-{user}");
        for i in 0..3 {
            send(&producer, &topic, "k", &format!("{user}-{i}")).await;
        }
        let (bootstrap, t) = (kafka.clone(), topic.clone());
        let got = tokio::task::spawn_blocking(move || consume_with(&bootstrap, &extra, &t, 3))
            .await
            .unwrap();
        assert_eq!(
            got,
            vec![
                format!("{user}-0"),
                format!("{user}-1"),
                format!("{user}-2")
            ]
        );
    }

    let wrong = sasl_plain(ALICE.0, "not-her-password");
    let mut refs = as_refs(&wrong);
    refs.push(("message.timeout.ms", "3000"));
    let producer = producer(&kafka, &refs);
    let result = producer
        .send(
            FutureRecord::to("plain-wrong").key("k").payload("nope"),
            Duration::from_secs(5),
        )
        .await;
    assert!(result.is_err(), "a wrong password must not produce");
    assert!(hw.broker.log().topic("plain-wrong").is_none());
    hw.broker.stop().await;
}

/// One request frame with a v1 header (null client id).
fn frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((10 + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(&api_key.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The next response frame, or `None` when the broker closed the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut len))
        .await
        .expect("the broker answers or closes within 10 s");
    read.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

const API_VERSIONS: i16 = 18;
const METADATA: i16 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_credentials_get_nothing() {
    let files = Files::new();
    let hw = secured(&files, false, &[Mechanism::Plain, Mechanism::ScramSha256]).await;
    let kafka = hw.kafka();

    // ApiVersions is answered (clients need it to find SaslHandshake); Metadata closes.
    let mut stream = TcpStream::connect(&kafka).await.unwrap();
    stream
        .write_all(&frame(API_VERSIONS, 0, 1, &[]))
        .await
        .unwrap();
    let answer = read_frame(&mut stream).await.expect("ApiVersions answer");
    assert_eq!(&answer[..4], &1i32.to_be_bytes());
    stream
        .write_all(&frame(METADATA, 0, 2, &0i32.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut stream).await, None, "metadata without auth");

    // A real client without SASL settings cannot produce (or create the topic).
    let producer = producer(&kafka, &[("message.timeout.ms", "3000")]);
    let result = producer
        .send(
            FutureRecord::to("no-auth").key("k").payload("nope"),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        result.is_err(),
        "an unauthenticated client must not produce"
    );
    assert!(hw.broker.log().topic("no-auth").is_none());
    assert!(hw.broker.log().topics().is_empty(), "nothing was created");
    hw.broker.stop().await;
}

fn kcat(kcat: &Path, kafka: &str, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    // `cargo test` puts the rdkafka crate's own librdkafka (built without TLS) on
    // LD_LIBRARY_PATH; kcat must load the system one, which has TLS and SASL.
    let mut child = Command::new(kcat)
        .env_remove("LD_LIBRARY_PATH")
        .args(["-b", kafka])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kcat");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().expect("kcat output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_tls_scram_sha512_works_and_no_auth_is_refused() {
    let Some(bin) = system_client("kcat") else {
        return;
    };
    let files = Files::new();
    let hw = secured(&files, true, &[Mechanism::ScramSha512]).await;
    let kafka = hw.kafka();
    let ca = format!("ssl.ca.location={}", files.ca());
    let user = format!("sasl.username={}", ALICE.0);
    let password = format!("sasl.password={}", ALICE.1);
    let output = tokio::task::spawn_blocking(move || {
        let secured = [
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
            "-X",
            &user,
            "-X",
            &password,
            "-X",
            &ca,
        ];
        let mut produce = secured.to_vec();
        produce.extend(["-t", "kcat-secure", "-P", "-K:"]);
        let out = kcat(&bin, &kafka, &produce, Some(b"k1:hello\nk2:world\n"));
        assert!(
            out.status.success(),
            "kcat -P over TLS + SCRAM: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut consume = secured.to_vec();
        consume.extend([
            "-t",
            "kcat-secure",
            "-C",
            "-o",
            "beginning",
            "-c",
            "2",
            "-e",
            "-f",
            "%k=%s@%o\n",
        ]);
        let consumed = kcat(&bin, &kafka, &consume, None);
        // TLS but no SASL: the broker closes the connection before Metadata is answered.
        let no_auth = kcat(
            &bin,
            &kafka,
            &["-X", "security.protocol=SSL", "-X", &ca, "-m", "5", "-L"],
            None,
        );
        // Wrong password.
        let wrong = kcat(
            &bin,
            &kafka,
            &[
                "-X",
                "security.protocol=SASL_SSL",
                "-X",
                "sasl.mechanisms=SCRAM-SHA-512",
                "-X",
                "sasl.username=alice",
                "-X",
                "sasl.password=wrong",
                "-X",
                &ca,
                "-m",
                "5",
                "-L",
            ],
            None,
        );
        (consumed, no_auth, wrong)
    })
    .await
    .unwrap();
    let (consumed, no_auth, wrong) = output;
    assert!(
        consumed.status.success(),
        "kcat -C: {}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout),
        "k1=hello@0\nk2=world@1\n"
    );
    for (what, out) in [("no credentials", no_auth), ("wrong password", wrong)] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && !stdout.contains("kcat-secure"),
            "kcat -L with {what} must get no metadata: {stdout}"
        );
    }
    hw.broker.stop().await;
}

/// Writes a CA and a client certificate it signed (PEM files `ca.pem`, `client.pem`,
/// `client.key` in `dir`).
fn client_ca(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut client = CertificateParams::new(vec!["sensor-gateway".to_string()]).unwrap();
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = client.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("client.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_mutual_tls_needs_a_client_certificate() {
    let Some(bin) = system_client("kcat") else {
        return;
    };
    let files = Files::new();
    client_ca(files.dir.path());
    let tls = KafkaTls {
        client_ca: Some(files.path("ca.pem")),
        ..files.tls()
    };
    let hw = InProcess::start_with(move |config| config.kafka.tls = Some(tls)).await;
    let kafka = hw.kafka();
    let ca = format!("ssl.ca.location={}", files.ca());
    let cert = format!(
        "ssl.certificate.location={}",
        files.path("client.pem").display()
    );
    let key = format!("ssl.key.location={}", files.path("client.key").display());
    let (with_cert, without) = tokio::task::spawn_blocking(move || {
        let tls = ["-X", "security.protocol=SSL", "-X", &ca, "-m", "5", "-L"];
        let mut with_cert = tls.to_vec();
        with_cert.extend(["-X", &cert, "-X", &key]);
        (
            kcat(&bin, &kafka, &with_cert, None),
            kcat(&bin, &kafka, &tls, None),
        )
    })
    .await
    .unwrap();
    assert!(
        with_cert.status.success()
            && String::from_utf8_lossy(&with_cert.stdout).contains("1 brokers"),
        "kcat with a client certificate: {}",
        String::from_utf8_lossy(&with_cert.stderr)
    );
    assert!(
        !without.status.success(),
        "kcat without a client certificate got metadata: {}",
        String::from_utf8_lossy(&without.stdout)
    );
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_over_tls_with_scram_sha256_and_plain() {
    let Some(python) = python_kafka_clients() else {
        return;
    };
    let files = Files::new();
    let hw = secured(&files, true, &[Mechanism::ScramSha256, Mechanism::Plain]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/kafka_security.py");
    let (kafka, ca) = (hw.kafka(), files.ca());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([script, &kafka, &ca, ALICE.0, ALICE.1])
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "python clients failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_client_on_a_tls_listener_gets_nothing() {
    let files = Files::new();
    let hw = InProcess::start_with(|config| config.kafka.tls = Some(files.tls())).await;
    let mut stream = TcpStream::connect(hw.kafka()).await.unwrap();
    stream
        .write_all(&frame(API_VERSIONS, 0, 1, &[]))
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("closed in time");
    // A TLS alert at most, never a Kafka answer, then the connection ends.
    if let Ok(n) = read {
        assert!(n == 0 || buf[0] == 0x15, "not a TLS alert: {:?}", &buf[..n]);
    }
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_silent_during_the_tls_handshake_is_closed() {
    let files = Files::new();
    let tls = files.tls();
    let hw = InProcess::start_with(move |config| {
        config.kafka.tls = Some(tls);
        config.kafka.idle_timeout_ms = 400;
    })
    .await;
    let mut stream = TcpStream::connect(hw.kafka()).await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed before the 10 s handshake limit");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    let hw = InProcess::start_with(|config| config.kafka.idle_timeout_ms = 400).await;
    let kafka = hw.kafka();

    // A busy connection: a request every 150 ms for 1.2 s keeps it open.
    let mut busy = TcpStream::connect(&kafka).await.unwrap();
    for i in 0..8 {
        busy.write_all(&frame(API_VERSIONS, 0, i, &[]))
            .await
            .unwrap();
        assert!(
            read_frame(&mut busy).await.is_some(),
            "busy connection closed"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // A silent one is closed after about the timeout, and not before.
    let mut silent = TcpStream::connect(&kafka).await.unwrap();
    silent
        .write_all(&frame(API_VERSIONS, 0, 1, &[]))
        .await
        .unwrap();
    assert!(read_frame(&mut silent).await.is_some());
    let start = Instant::now();
    assert_eq!(read_frame(&mut silent).await, None);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );

    // Half a frame is not a request: a client that stops mid-frame is idle too.
    let mut partial = TcpStream::connect(&kafka).await.unwrap();
    partial
        .write_all(&frame(API_VERSIONS, 0, 1, &[])[..6])
        .await
        .unwrap();
    assert_eq!(read_frame(&mut partial).await, None);
    hw.broker.stop().await;
}

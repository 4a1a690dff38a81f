//! AWS-protocol servers on 127.0.0.1 for the live-data tests:
//! - moto (`moto_server` from the test venv), a real AWS-protocol endpoint for EC2;
//! - an EC2 endpoint that answers some actions itself (recorded responses, faults) and sends
//!   every other one to moto unchanged;
//! - a Price List (`AWSPriceListService`) endpoint, which moto does not have.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A moto server, stopped when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
    /// moto's working directory (and its recorder's file), removed after moto stops.
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto from the test venv, or None (and why) outside CI; under CI a missing moto
    /// fails the test.
    ///
    /// moto binds a port of its own choosing (`-p 0`) and the port is read from its startup
    /// line. Picking a free port here and handing it over would leave a window in which a test
    /// running beside this one could take the same port: two motos would race for it, one would
    /// exit, and both tests would talk to the survivor until its owner stopped it.
    pub fn start(test: &str) -> Option<Moto> {
        let python = super::venv_python(test)?;
        Some(Self::spawn(
            test,
            Command::new(python.with_file_name("moto_server")),
        ))
    }

    /// moto, answering DescribeSpotPriceHistory with `prices` (zone -> type -> $/h) instead of
    /// its fixed 0.00001 (tests/moto_priced.py: moto's own server, that one answer's price
    /// taken from the table).
    pub fn start_with_spot_prices(
        test: &str,
        prices: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    ) -> Option<(Moto, tempfile::NamedTempFile)> {
        let python = super::venv_python(test)?;
        let table = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(table.path(), serde_json::to_vec(prices).unwrap()).unwrap();
        let mut cmd = Command::new(python);
        cmd.arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moto_priced.py"))
            .env("SPOTPLAN_MOTO_SPOT_PRICES", table.path());
        Some((Self::spawn(test, cmd), table))
    }

    fn spawn(test: &str, mut cmd: Command) -> Moto {
        let exe = format!("{cmd:?}");
        // moto's request recorder writes where it is told, else into its working directory:
        // both are a directory of this moto's own, never the source tree.
        let dir = tempfile::Builder::new().prefix("moto-").tempdir().unwrap();
        let mut child = cmd
            .current_dir(dir.path())
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{test}: cannot start {exe}: {e}"));
        let port = listening_port(child.stderr.take().unwrap());
        match port.recv_timeout(Duration::from_secs(60)) {
            Ok(port) => Moto {
                child,
                url: format!("http://127.0.0.1:{port}"),
                _dir: dir,
            },
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("{test}: moto did not report a listening port ({e}); exit: {status:?}")
            }
        }
    }
}

/// Reads werkzeug's ` * Running on http://127.0.0.1:PORT` from moto's stderr and sends PORT,
/// then keeps draining stderr (moto logs every request there) so moto never blocks on a full
/// pipe. The sender drops if moto exits first.
fn listening_port(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<u16> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let port = line
                .split_once("Running on http://127.0.0.1:")
                .and_then(|(_, rest)| rest.trim().parse::<u16>().ok());
            if let Some(port) = port
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(port);
            }
        }
    });
    rx
}

/// How the EC2 endpoint answers one request of an action.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Send it to moto.
    Forward,
    /// This XML, HTTP 200.
    Xml(String),
    /// An EC2 error: HTTP status, code, message.
    Error(u16, &'static str, &'static str),
    /// Never answer.
    Hang,
}

/// Scripted answers per action: each request takes the next reply of its action (the last one
/// repeats); actions without a script go to moto.
#[derive(Clone, Default)]
pub struct Script(Arc<Mutex<HashMap<String, Vec<Reply>>>>);

impl Script {
    pub fn set(&self, action: &str, replies: Vec<Reply>) {
        self.0.lock().unwrap().insert(action.into(), replies);
    }
    fn next(&self, action: &str) -> Reply {
        let mut m = self.0.lock().unwrap();
        match m.get_mut(action) {
            Some(v) if v.len() > 1 => v.remove(0),
            Some(v) => v[0].clone(),
            None => Reply::Forward,
        }
    }
}

/// Requests seen, per action: their bodies, in order.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<HashMap<String, Vec<String>>>>);

impl Seen {
    pub fn count(&self, action: &str) -> usize {
        self.0.lock().unwrap().get(action).map_or(0, Vec::len)
    }

    /// The bodies of the requests of `action`, URL-decoded.
    pub fn bodies(&self, action: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .get(action)
            .cloned()
            .unwrap_or_default()
    }

    fn record(&self, action: &str, body: &str) {
        let decoded = url_decode(body);
        self.0
            .lock()
            .unwrap()
            .entry(action.to_string())
            .or_default()
            .push(decoded);
    }
}

/// Query-protocol bodies are form-encoded.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs an axum app on 127.0.0.1 in a thread of its own for the rest of the test process.
pub fn serve(app: axum::Router) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

fn form_value<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// An EC2 endpoint that answers scripted actions itself and sends the rest to `moto`.
pub fn ec2_endpoint(moto: &str, script: Script) -> (String, Seen) {
    spotplan::install_crypto_provider();
    let seen = Seen::default();
    let (moto, s) = (moto.to_string(), seen.clone());
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let (moto, script, seen) = (moto.clone(), script.clone(), s.clone());
        async move {
            let text = String::from_utf8_lossy(&body).to_string();
            let action = form_value(&text, "Action").unwrap_or("").to_string();
            seen.record(&action, &text);
            match script.next(&action) {
                Reply::Xml(x) => (StatusCode::OK, x).into_response_parts(),
                Reply::Error(status, code, message) => (
                    StatusCode::from_u16(status).unwrap(),
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>test</RequestID></Response>"
                    ),
                )
                    .into_response_parts(),
                Reply::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    (StatusCode::OK, String::new()).into_response_parts()
                }
                Reply::Forward => {
                    let mut req = reqwest::Client::new().post(&moto).body(body.to_vec());
                    for (k, v) in headers.iter() {
                        if k != "host" && k != "content-length" {
                            req = req.header(k, v);
                        }
                    }
                    let resp = req
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("forwarding {action} to moto at {moto}: {e}"));
                    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                    (status, resp.text().await.unwrap()).into_response_parts()
                }
            }
        }
    });
    (serve(app), seen)
}

trait Parts {
    fn into_response_parts(self) -> (StatusCode, [(&'static str, &'static str); 1], String);
}

impl Parts for (StatusCode, String) {
    fn into_response_parts(self) -> (StatusCode, [(&'static str, &'static str); 1], String) {
        (self.0, [("content-type", "text/xml")], self.1)
    }
}

/// The EC2 XML of a DescribeSpotPriceHistory answer with these records
/// (zone, type, price, timestamp).
pub fn spot_price_history_xml(records: &[(String, String, String, String)]) -> String {
    let items: String = records
        .iter()
        .map(|(zone, ty, price, ts)| {
            format!(
                "<item><instanceType>{ty}</instanceType><productDescription>Linux/UNIX</productDescription><spotPrice>{price}</spotPrice><timestamp>{ts}</timestamp><availabilityZone>{zone}</availabilityZone></item>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeSpotPriceHistoryResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>test</requestId><spotPriceHistorySet>{items}</spotPriceHistorySet><nextToken></nextToken></DescribeSpotPriceHistoryResponse>"
    )
}

/// The EC2 XML of a GetSpotPlacementScores answer: (region, zone ID, score).
pub fn placement_scores_xml(scores: &[(&str, &str, u8)]) -> String {
    let items: String = scores
        .iter()
        .map(|(r, z, s)| {
            format!("<item><region>{r}</region><availabilityZoneId>{z}</availabilityZoneId><score>{s}</score></item>")
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><GetSpotPlacementScoresResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>test</requestId><spotPlacementScoreSet>{items}</spotPlacementScoreSet></GetSpotPlacementScoresResponse>"
    )
}

/// How the Price List endpoint answers.
#[derive(Clone)]
pub enum PriceReply {
    /// These pages of PriceList documents, linked by NextToken.
    Pages(Vec<Vec<String>>),
    /// An error: HTTP status and `__type`.
    Error(u16, &'static str),
}

/// A Price List (`AWSPriceListService.GetProducts`, JSON 1.1) endpoint.
pub fn pricing_endpoint(reply: PriceReply) -> (String, Seen) {
    let seen = Seen::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let (reply, seen) = (reply.clone(), s.clone());
        async move {
            seen.record("GetProducts", &String::from_utf8_lossy(&body));
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let json = |status: u16, v: serde_json::Value| {
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/x-amz-json-1.1")],
                    v.to_string(),
                )
            };
            match reply {
                PriceReply::Error(status, ty) => json(
                    status,
                    serde_json::json!({"__type": ty, "message": format!("{ty} (test)")}),
                ),
                PriceReply::Pages(pages) => {
                    let i: usize = req["NextToken"]
                        .as_str()
                        .and_then(|t| t.strip_prefix("page-"))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let mut body = serde_json::json!({
                        "FormatVersion": "aws_v1",
                        "PriceList": pages.get(i).cloned().unwrap_or_default(),
                    });
                    if i + 1 < pages.len() {
                        body["NextToken"] = serde_json::json!(format!("page-{}", i + 1));
                    }
                    json(200, body)
                }
            }
        }
    });
    (serve(app), seen)
}

/// A Price List product document for a Linux shared-tenancy compute instance, in the format
/// AWS documents for GetProducts (`product.attributes`, `terms.OnDemand.*.priceDimensions`).
pub fn price_list_product(region_code: &str, ty: &str, usd: f64) -> String {
    let sku = format!("SKU{}", ty.replace('.', "").to_uppercase());
    serde_json::json!({
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "instanceType": ty, "regionCode": region_code, "operatingSystem": "Linux",
                "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
                "licenseModel": "No License required", "servicecode": "AmazonEC2",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {format!("{sku}.JRTCKXETXF"): {
            "priceDimensions": {format!("{sku}.JRTCKXETXF.6YS6EN2CT7"): {
                "unit": "Hrs", "endRange": "Inf", "beginRange": "0",
                "description": format!("${usd} per On Demand Linux {ty} Instance Hour"),
                "pricePerUnit": {"USD": format!("{usd:.10}")},
            }},
            "sku": sku, "offerTermCode": "JRTCKXETXF",
        }}},
        "version": "test",
    })
    .to_string()
}

/// Environment for the spotplan binary to talk to these endpoints with dummy credentials and
/// no instance metadata.
pub fn env(ec2: &str, pricing: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_EC2", ec2.to_string()),
        ("AWS_ENDPOINT_URL_PRICING", pricing.to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/nonexistent".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
    ]
}

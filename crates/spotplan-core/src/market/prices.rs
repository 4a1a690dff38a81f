//! The price file: `region,instance_type,on_demand_usd_per_hour,spot_usd_per_hour` (USD per
//! instance-hour, Linux, shared tenancy; the spot column may be empty).

use super::HashMap;
use super::advisor::{RegionLoss, check_nested_loss, keep_lost_regions};
use super::error::DataError;
use serde::Serialize;

/// One row of the price file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    pub on_demand: f64,
    pub spot: Option<f64>,
}

/// Prices per region and instance type, USD per instance-hour.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceTable {
    pub regions: HashMap<String, HashMap<String, Price>>,
}

/// The header the price CSV must have.
pub const PRICE_HEADER: [&str; 4] = [
    "region",
    "instance_type",
    "on_demand_usd_per_hour",
    "spot_usd_per_hour",
];

/// `123`, `0.096`: digits with at most one dot, not empty: a valid non-negative price.
fn plain_decimal(b: &[u8]) -> bool {
    let mut dots = 0;
    !b.is_empty()
        && b.len() < 32
        && b.iter().all(|c| {
            dots += usize::from(*c == b'.');
            c.is_ascii_digit() || *c == b'.'
        })
        && dots <= 1
        && b != b"."
}

impl PriceTable {
    /// Parses the whole file.
    pub fn parse(bytes: &[u8], file: &str) -> Result<PriceTable, DataError> {
        Self::parse_regions(bytes, file, None)
    }

    /// Parses the rows of `regions` (all when `None`); other rows must still be CSV rows of four
    /// columns.
    pub fn parse_regions(
        bytes: &[u8],
        file: &str,
        regions: Option<&[&str]>,
    ) -> Result<PriceTable, DataError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::Headers)
            .from_reader(bytes);
        let csv_err = |line: u64, column: &str, problem: String| DataError::Csv {
            file: file.into(),
            line,
            column: column.into(),
            problem,
        };
        let header = reader
            .headers()
            .map_err(|e| csv_err(1, "(header)", e.to_string()))?
            .clone();
        if header.iter().collect::<Vec<_>>() != PRICE_HEADER {
            return Err(csv_err(
                1,
                "(header)",
                format!(
                    "is `{}`; want `{}`",
                    header.iter().collect::<Vec<_>>().join(","),
                    PRICE_HEADER.join(",")
                ),
            ));
        }
        let mut out: HashMap<String, HashMap<String, Price>> = HashMap::default();
        let mut record = csv::ByteRecord::new();
        let mut rows = 0usize;
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    return Err(csv_err(line, "(row)", e.to_string()));
                }
            }
            rows += 1;
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != PRICE_HEADER.len() {
                return Err(csv_err(
                    line,
                    "(row)",
                    format!("has {} columns; want 4", record.len()),
                ));
            }
            let text = |i: usize| -> Result<&str, DataError> {
                std::str::from_utf8(&record[i])
                    .map(str::trim)
                    .map_err(|_| csv_err(line, PRICE_HEADER[i], "is not UTF-8".into()))
            };
            let region = text(0)?;
            let keep = regions.is_none_or(|r| r.contains(&region));
            // A row of a region not kept is validated too, but a plain decimal needs no
            // float parse to be known good (most of the file's rows, in a one-region run).
            if !keep
                && plain_decimal(&record[2])
                && (record[3].is_empty() || plain_decimal(&record[3]))
                && !record[1].is_empty()
            {
                continue;
            }
            let ty = text(1)?;
            if region.is_empty() {
                return Err(csv_err(line, PRICE_HEADER[0], "is empty".into()));
            }
            if ty.is_empty() {
                return Err(csv_err(line, PRICE_HEADER[1], "is empty".into()));
            }
            let price = |column: usize, required: bool| -> Result<Option<f64>, DataError> {
                let t = text(column)?;
                if t.is_empty() {
                    return if required {
                        Err(csv_err(line, PRICE_HEADER[column], "is empty".into()))
                    } else {
                        Ok(None)
                    };
                }
                match t.parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
                    Ok(v) if v < 0.0 => Err(csv_err(
                        line,
                        PRICE_HEADER[column],
                        format!("{t} is negative; prices are USD per hour, >= 0"),
                    )),
                    _ => Err(csv_err(
                        line,
                        PRICE_HEADER[column],
                        format!("'{t}' is not a price (USD per hour)"),
                    )),
                }
            };
            let on_demand = price(2, true)?.unwrap_or_default();
            let spot = price(3, false)?;
            if !keep {
                continue;
            }
            // Rows come grouped by region: look the region up before allocating its name.
            let table = match out.get_mut(region) {
                Some(t) => t,
                None => out.entry(region.to_string()).or_default(),
            };
            table.insert(ty.to_string(), Price { on_demand, spot });
        }
        if rows == 0 {
            return Err(csv_err(2, "(row)", "the file has no price rows".into()));
        }
        Ok(PriceTable { regions: out })
    }

    pub fn get(&self, region: &str, ty: &str) -> Option<Price> {
        self.regions.get(region)?.get(ty).copied()
    }

    pub fn entry_count(&self) -> usize {
        self.regions.values().map(HashMap::len).sum()
    }

    /// Like [`super::SpotAdvisor::check_replaces`], for prices.
    pub fn check_replaces(&self, last_good: &PriceTable, file: &str) -> Result<(), DataError> {
        check_nested_loss(
            file,
            "region/type prices",
            &self.regions,
            &last_good.regions,
        )
    }

    /// Keeps `last_good`'s prices for every region this table lost (see
    /// [`super::advisor::REGION_LOSS_LIMIT`]).
    pub fn keep_lost_regions(
        &mut self,
        last_good: &PriceTable,
        only: Option<&[&str]>,
    ) -> Vec<RegionLoss> {
        keep_lost_regions(&mut self.regions, &last_good.regions, only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_reject_negative_and_bad_header() {
        let ok = "region,instance_type,on_demand_usd_per_hour,spot_usd_per_hour\nus-east-1,m5.large,0.096,\neu-west-1,m5.large,0.107,0.04\n";
        let t = PriceTable::parse(ok.as_bytes(), "p.csv").unwrap();
        assert_eq!(t.get("us-east-1", "m5.large").unwrap().spot, None);
        assert_eq!(t.get("eu-west-1", "m5.large").unwrap().spot, Some(0.04));
        let one = PriceTable::parse_regions(ok.as_bytes(), "p.csv", Some(&["eu-west-1"])).unwrap();
        assert_eq!(one.entry_count(), 1);
        let neg = ok.replace("0.096,", "-0.1,");
        let err = PriceTable::parse(neg.as_bytes(), "p.csv").unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.csv: line 2, column `on_demand_usd_per_hour`: -0.1 is negative; prices are USD per hour, >= 0"
        );
        let hdr = ok.replace("spot_usd_per_hour", "spot");
        assert!(
            PriceTable::parse(hdr.as_bytes(), "p.csv")
                .unwrap_err()
                .to_string()
                .contains("(header)")
        );
        for bad in ["1.2.3", "-1", "x", ""] {
            let other = format!("{ok}us-west-2,m5.large,{bad},\n");
            let e = PriceTable::parse_regions(other.as_bytes(), "p.csv", Some(&["eu-west-1"]))
                .unwrap_err();
            assert!(
                e.to_string()
                    .contains("line 4, column `on_demand_usd_per_hour`"),
                "{bad}: {e}"
            );
        }
        assert!(plain_decimal(b"0.096") && plain_decimal(b"12") && !plain_decimal(b"."));
        let short = format!("{ok}us-west-2,m5.large\n");
        assert!(
            PriceTable::parse_regions(short.as_bytes(), "p.csv", Some(&["eu-west-1"]))
                .unwrap_err()
                .to_string()
                .contains("line 4")
        );
    }
}

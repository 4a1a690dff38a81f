//! On-demand prices from the AWS Price List API (`pricing:GetProducts`): Linux, shared tenancy,
//! no pre-installed software, the `Used` capacity status (the price of running an instance).

use super::{AwsError, Counter};
use aws_sdk_pricing::Client;
use aws_sdk_pricing::types::{Filter, FilterType};
use serde_json::Value;
use spotplan_core::market::HashMap;

/// The endpoint region of the Price List API (it is served from a few regions only).
pub const PRICING_REGION: &str = "us-east-1";

fn term(field: &str, value: &str) -> Filter {
    Filter::builder()
        .r#type(FilterType::TermMatch)
        .field(field)
        .value(value)
        .build()
        .expect("field, type and value are set")
}

/// On-demand $/h per instance type in `region`.
pub async fn on_demand(
    client: &Client,
    calls: &Counter,
    region: &str,
) -> Result<HashMap<String, f64>, AwsError> {
    let mut pages = client
        .get_products()
        .service_code("AmazonEC2")
        .format_version("aws_v1")
        .filters(term("regionCode", region))
        .filters(term("operatingSystem", "Linux"))
        .filters(term("tenancy", "Shared"))
        .filters(term("preInstalledSw", "NA"))
        .filters(term("capacitystatus", "Used"))
        .filters(term("licenseModel", "No License required"))
        .max_results(100)
        .into_paginator()
        .send();
    let mut out = HashMap::default();
    while let Some(page) = pages.next().await {
        calls.page("GetProducts");
        let page = page.map_err(|e| AwsError::from_sdk("pricing:GetProducts", e))?;
        for item in page.price_list() {
            if let Some((ty, price)) =
                parse_product(item).map_err(|why| AwsError::bad_data("pricing:GetProducts", why))?
            {
                out.insert(ty, price);
            }
        }
    }
    Ok(out)
}

/// One Price List product: `Some((instance type, $/h))` for a Linux shared-tenancy compute
/// instance with an hourly on-demand price, `None` for any other product (storage, hosts...),
/// an error for a document that is not a Price List product.
pub fn parse_product(text: &str) -> Result<Option<(String, f64)>, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("a PriceList entry is not JSON: {e}"))?;
    let product = v
        .get("product")
        .ok_or("a PriceList entry has no `product`")?;
    let attrs = &product["attributes"];
    let Some(ty) = attrs["instanceType"].as_str() else {
        return Ok(None);
    };
    let is = |k: &str, want: &str| attrs[k].as_str().is_none_or(|v| v == want);
    if !(is("operatingSystem", "Linux")
        && is("tenancy", "Shared")
        && is("preInstalledSw", "NA")
        && is("capacitystatus", "Used"))
        || product["productFamily"]
            .as_str()
            .is_some_and(|f| f != "Compute Instance")
    {
        return Ok(None);
    }
    let dims = v["terms"]["OnDemand"]
        .as_object()
        .into_iter()
        .flat_map(|terms| terms.values())
        .filter_map(|t| t["priceDimensions"].as_object())
        .flat_map(|d| d.values());
    for d in dims {
        if d["unit"].as_str().is_some_and(|u| u != "Hrs") {
            continue;
        }
        let Some(usd) = d["pricePerUnit"]["USD"].as_str() else {
            continue;
        };
        let price: f64 = usd
            .parse()
            .map_err(|_| format!("{ty}: '{usd}' is not a price"))?;
        if price.is_finite() && price > 0.0 {
            return Ok(Some((ty.to_string(), price)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_compute_instance_and_skips_other_products() {
        let m5 = r#"{"product":{"productFamily":"Compute Instance","attributes":{"instanceType":"m5.large","operatingSystem":"Linux","tenancy":"Shared","preInstalledSw":"NA","capacitystatus":"Used"},"sku":"X"},"terms":{"OnDemand":{"X.T":{"priceDimensions":{"X.T.D":{"unit":"Hrs","pricePerUnit":{"USD":"0.0960000000"}}}}}}}"#;
        assert_eq!(parse_product(m5).unwrap(), Some(("m5.large".into(), 0.096)));
        let ebs = r#"{"product":{"productFamily":"Storage","attributes":{"volumeType":"Provisioned IOPS"}},"terms":{}}"#;
        assert_eq!(parse_product(ebs).unwrap(), None);
        assert!(parse_product("{").is_err());
        assert!(parse_product(&m5.replace("0.0960000000", "lots")).is_err());
    }
}

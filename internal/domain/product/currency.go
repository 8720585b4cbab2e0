package product

import "strings"

// DefaultCurrency is the currency of a product created without one.
const DefaultCurrency = "EUR"

// currencies are the ISO 4217 codes of the currencies in circulation that
// a shop can price in: precious metals (XAU…), bond-market units (XBA…),
// fund codes (BOV, CHE, USN…), the SDR (XDR) and the testing and "no
// currency" codes (XTS, XXX) are left out.
var currencies = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Fields(`
		AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL
		BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP
		ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
		IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL
		LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
		NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD
		SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
		USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG`) {
		m[c] = true
	}
	return m
}()

// ValidCurrency reports whether code is the ISO 4217 code of a currency in
// circulation (upper case, e.g. EUR, USD, JPY).
func ValidCurrency(code string) bool { return currencies[code] }

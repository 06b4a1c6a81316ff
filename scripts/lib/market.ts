/**
 * Symbols with realistic starting prices: the original's VTI, IVE and IWS plus a wider set of
 * S&P 500 names and ETFs, and the exchange each lists on.
 */
export interface Instrument {
  readonly symbol: string;
  readonly exchange: 'NASDAQ' | 'NYSE' | 'NYSEARCA';
  readonly price: number;
}

const list = (exchange: Instrument['exchange'], entries: string): Instrument[] =>
  entries
    .trim()
    .split(/\s+/)
    .map((entry) => {
      const [symbol, price] = entry.split(':');
      return { symbol: symbol!, exchange, price: Number(price) };
    });

export const INSTRUMENTS: readonly Instrument[] = [
  ...list('NYSEARCA', 'VTI:105.50 IVE:94.10 IWS:72.80 SPY:210.30 IVV:211.60 VOO:192.40 QQQ:108.90 IWM:122.40 DIA:176.20 XLF:24.70'),
  ...list(
    'NASDAQ',
    `AAPL:118.40 MSFT:46.70 AMZN:531.50 GOOGL:664.70 META:94.20 NVDA:22.40 TSLA:266.20 AVGO:130.10 COST:148.70 PEP:97.40
     ADBE:88.60 CSCO:28.30 NFLX:114.30 INTC:30.60 CMCSA:60.90 AMGN:158.20 TXN:51.20 QCOM:62.80 INTU:104.30 AMAT:18.90
     SBUX:56.90 GILD:117.40 MDLZ:45.40 ADP:85.70 ISRG:521.80 BKNG:1321.50 VRTX:131.20 REGN:567.80 MU:18.70 PYPL:37.90`,
  ),
  ...list(
    'NYSE',
    `BRK.B:142.10 JPM:68.10 JNJ:101.30 V:73.90 PG:84.60 XOM:84.50 UNH:118.40 HD:116.90 MA:93.30 CVX:101.90
     MRK:59.60 ABBV:68.20 KO:42.50 PFE:34.90 WMT:72.20 BAC:17.80 DIS:116.50 MCD:97.30 CRM:78.10 ABT:47.80
     LLY:83.70 TMO:125.40 NKE:103.50 ORCL:43.80 WFC:56.30 NEE:101.40 LIN:95.60 BMY:66.20 UPS:106.80 PM:83.30
     HON:103.90 RTX:108.60 LOW:72.30 IBM:158.50 CAT:79.40 GS:193.10 BA:144.30 GE:25.60 MMM:162.20 T:34.60`,
  ),
];

export const ORIGINAL_SYMBOLS = ['VTI', 'IVE', 'IWS'] as const;

/** A price of every instrument (bid at its price, ask 2 cents above) as `prices` records. */
export function instrumentPrices(timestamp: number): { key: string; value: string }[] {
  return INSTRUMENTS.map((i) => ({ key: i.symbol, value: JSON.stringify({ symbol: i.symbol, exchange: i.exchange, bid: i.price, ask: i.price + 0.02, timestamp }) }));
}
